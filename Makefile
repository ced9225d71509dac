# Two commands: `make demo` (the main job) and `make test` (the test suite);
# `make study` runs the sampler study.
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo study test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Train EDM on scikit-learn's 8x8 digits (no download): a sample grid, a checkpoint,
# metrics and nearest-neighbour distances in out/digits_edm/.
demo: $(STAMP)
	$(PY) experiments/train.py --config digits_edm --workdir out/digits_edm

# EDM Figure 2 at small scale with ideal denoisers: out/sampler_study/.
study: $(STAMP)
	$(PY) experiments/sampler_study.py --out out/sampler_study

# The tests and every docstring example of the library (run as written).
test: $(STAMP)
	$(PY) -m pytest -n 2 -q tests --doctest-modules edmjax

clean:
	rm -rf $(VENV) out build *.egg-info
