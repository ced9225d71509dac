# Two commands: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) experiments/sampler_study.py --out out/sampler_study

test: $(STAMP)
	$(PY) -m pytest -n 2 -q tests

clean:
	rm -rf $(VENV) out build *.egg-info
