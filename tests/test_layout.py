"""The code's layout rules: no private names across modules, top-level imports, no package
name that hides a module, one `Array` annotation (read from the source, no imports run)."""

import ast
import importlib
import os
import pkgutil
import types

import pytest

import edmjax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Package-private helper modules any edmjax module may import, and where each may be used.
SHARED = {"_checks": "edmjax/", "_arrays": "edmjax/", "_common": "edmjax/samplers/"}


def _sources(*folders):
  for folder in folders:
    for dirpath, _, names in os.walk(os.path.join(ROOT, folder)):
      for name in sorted(names):
        if name.endswith(".py"):
          path = os.path.join(dirpath, name)
          yield os.path.relpath(path, ROOT), ast.parse(open(path, encoding="utf-8").read())


def _private(name):
  return name.startswith("_") and not name.startswith("__")


def _edmjax_aliases(tree):
  """{local name: dotted edmjax module} of a file's imports."""
  out = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edmjax"):
      for a in node.names:
        out[a.asname or a.name] = f"{node.module}.{a.name}"
    elif isinstance(node, ast.Import):
      for a in node.names:
        if a.name.startswith("edmjax"):
          out[a.asname or a.name.split(".")[0]] = a.name
  return out


@pytest.mark.parametrize("path, tree", list(_sources("edmjax", "experiments", "benchmarks")),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_no_private_names_across_modules(path, tree):
  bad = []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edmjax"):
      for a in node.names:
        if _private(a.name) and not path.startswith(SHARED.get(a.name, "-")):
          bad.append(f"from {node.module} import {a.name}")
      last = node.module.split(".")[-1]
      if _private(last) and not path.startswith(SHARED.get(last, "-")):
        bad.append(f"from {node.module} import ...")
  aliases = _edmjax_aliases(tree)
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases and _private(node.attr)):
      bad.append(f"{node.value.id}.{node.attr}")
  assert not bad, f"{path} reaches into private names of other modules: {sorted(set(bad))}"


@pytest.mark.parametrize("path, tree", list(_sources("edmjax")),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_library_imports_edmjax_at_the_top(path, tree):
  local = [node.lineno for fn in ast.walk(tree)
           if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
           for node in ast.walk(fn)
           if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edmjax"))
           or (isinstance(node, ast.Import)
               and any(a.name.startswith("edmjax") for a in node.names))]
  assert not local, f"{path}: function-local edmjax imports at lines {local}"
  arrays = [node.lineno for node in tree.body if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "Array" for t in node.targets)]
  assert not arrays or path == "edmjax/_arrays.py", \
      f"{path}: `Array` is defined in edmjax/_arrays.py only (line {arrays})"


def test_no_package_name_hides_a_module():
  for pkg in ("edmjax",) + tuple(f"edmjax.{m.name}" for m in pkgutil.iter_modules(
      edmjax.__path__) if m.ispkg):
    module = importlib.import_module(pkg)
    for info in pkgutil.iter_modules(module.__path__):
      importlib.import_module(f"{pkg}.{info.name}")
      attr = getattr(module, info.name)
      assert isinstance(attr, types.ModuleType), \
          f"{pkg}.{info.name} is a {type(attr).__name__}, hiding the module {info.name}"
