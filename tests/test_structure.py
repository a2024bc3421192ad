"""The package's structure, read from its source: every module stands on a floor and imports only modules
on lower floors, so the imports form no cycle and data flows one way. Imports sit at the top of each
file; only heavy or optional packages (TensorFlow, Keras, the exporters, the web server, matplotlib) are
imported inside the functions that need them. Two modules are made of Keras classes and import it at
the top (``callbacks``, ``multiworker``); they count as heavy packages themselves. The CLI imports its
stage modules inside its functions (importing ``happysad.cli`` loads none of them).

A new module gets a floor here: the lowest floor above everything it imports.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "happysad"

FLOORS = [
    ["__init__", "errors", "files"],             # plain helpers: no package imports
    ["images", "runtime", "device", "multiworker", "backbones", "augment", "optim", "recipes"],  # one image, one runtime, Keras's backbones
    ["model", "folders", "dedup", "photo", "data", "clean_report", "places"],  # networks, class folders, ...
    ["faces"],
    ["video"],
    ["clean", "split", "bundle"],
    ["predict", "callbacks", "serve_video"],
    ["evaluate", "explain", "export", "serve"],
    ["report"],                                   # figures and the page of a run or an evaluation
    ["train", "train_photo", "distill"],
    ["demo"],
    ["cli"],                                      # parses and prints
    ["__main__"],
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}

# Imported inside functions only: slow to import (TensorFlow alone takes seconds) or not always installed.
LAZY = {"tensorflow", "keras", "tf2onnx", "onnxruntime", "ai_edge_litert", "matplotlib",
        "fastapi", "fastapi_offline", "starlette", "uvicorn", "IPython", "av", "scipy", "h5py",
        "skimage", "torch"}
HEAVY_MODULES = {"callbacks", "multiworker"}  # import Keras at the top, so are imported like it
# Modules whose imports inside functions are let through and left out of the graph while they are being
# moved (name -> what moving them would break). Empty: every module follows the rules.
NOT_YET: dict[str, str] = {}
DEFERS_STAGES = {"cli"}  # `import happysad.cli` stays light; each command imports what it runs


INSIDE = 99  # the level given to a sub-package's imports of its own parts (they are not edges)


def _parse(path: Path) -> ast.Module:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        node.where = f"{path.relative_to(PACKAGE).as_posix()}:{getattr(node, 'lineno', 0)}"  # for messages
    return tree


@functools.cache  # parsed once for all the tests below
def _modules() -> dict[str, ast.Module]:
    """Module name -> its syntax tree. A sub-package (a folder with __init__.py) counts as one module:
    its files' statements together, with ``from ..x`` read as the package's ``from .x``."""
    out = {p.stem: _parse(p) for p in sorted(PACKAGE.glob("*.py"))}
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        trees = [_parse(p) for p in sorted(init.parent.rglob("*.py"))]
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level:
                    node.level = node.level - 1 if node.level > 1 else INSIDE
        out[init.parent.name] = ast.Module(body=[n for t in trees for n in t.body], type_ignores=[])
    return out


def _in_package(node: ast.ImportFrom, modules) -> list[str]:
    """The package modules a relative import names (``from . import x`` or ``from .x import y``)."""
    if node.level != 1:
        return []
    if node.module:
        return [node.module.split(".")[0]]
    names = [a.name for a in node.names if a.name in modules]
    return names or ["__init__"]  # from . import __version__


def _deferred(tree: ast.Module) -> list[ast.stmt]:
    """Import statements inside functions."""
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return [n for f in funcs for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _roots(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The top-level names an absolute import loads ('tensorflow' for ``from tensorflow.lite import x``)."""
    if isinstance(node, ast.ImportFrom):
        return [] if node.level else [node.module.split(".")[0]]
    return [a.name.split(".")[0] for a in node.names]


def _graph(modules) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, tree in modules.items():
        not_yet = {id(n) for n in _deferred(tree)} if name in NOT_YET else set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in not_yet:
                edges[name].update(t for t in _in_package(node, modules) if t != name)
    return edges


def test_every_module_has_a_floor():
    missing = sorted(set(_modules()) - set(FLOOR))
    assert not missing, f"give {', '.join(missing)} a floor in FLOORS (tests/test_structure.py)"


def test_each_module_imports_only_lower_floors():
    modules = _modules()
    upward = [f"{m} (floor {FLOOR[m]}) imports {t} (floor {FLOOR[t]})"
              for m, targets in _graph(modules).items() for t in sorted(targets)
              if m in FLOOR and t in FLOOR and FLOOR[t] >= FLOOR[m]]
    assert not upward, "\n".join(upward)


def test_the_imports_form_no_cycle():
    """Checked on its own (not only implied by the floors), so that a cycle is named as one."""
    edges = _graph(_modules())
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [m, t]))
            if t not in state:
                visit(t, path + [m])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [])


def test_imports_are_at_the_top_except_heavy_packages():
    modules = _modules()
    wrong = []
    for name, tree in modules.items():
        if name in NOT_YET:
            continue
        for node in _deferred(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                if name not in DEFERS_STAGES and not set(_in_package(node, modules)) <= HEAVY_MODULES:
                    wrong.append(f"{node.where}: package import inside a function")
                continue
            wrong += [f"{node.where}: {r} imported inside a function"
                      for r in _roots(node) if r not in LAZY]
    assert not wrong, "move these to the top of the file (or add a heavy package to LAZY):\n" + "\n".join(wrong)


def test_heavy_packages_are_never_imported_at_module_level():
    modules = _modules()
    wrong = []
    for name, tree in modules.items():
        if name in HEAVY_MODULES:
            continue  # made of Keras classes: they import it at the top
        deferred = {id(n) for n in _deferred(tree)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in deferred:
                package = _in_package(node, modules) if isinstance(node, ast.ImportFrom) else []
                wrong += [f"{node.where}: {r}" for r in _roots(node) + package
                          if r in LAZY or r in HEAVY_MODULES]
    assert not wrong, "import these inside the functions that use them:\n" + "\n".join(wrong)


def test_every_stage_imports_without_tensorflow():
    """Importing any module (all their top-level imports, for real) loads neither TensorFlow nor Keras."""
    names = [m for m in _modules() if m not in ("__init__", "__main__", *HEAVY_MODULES)]
    code = ("import sys\n" + "".join(f"import happysad.{m}\n" for m in names) +
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
