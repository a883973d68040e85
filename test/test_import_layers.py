"""The import graph of the tree (issue 28): no import from a lower layer to a higher one, no circle.

Layers, ground first: ``autopet_common``; ``clicks``, ``evaluation_metrics``,
``publication_template``; ``Task1``, ``Task2``; ``local_challenge``; ``inference.py`` and
``benchmarks``. Every import counts, also one inside a function (a lazy import is still a
dependency). Read from the source with ``ast``: nothing is imported.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"autopet_common": 0, "clicks": 1, "evaluation_metrics": 1, "publication_template": 1,
          "Task1": 2, "Task2": 2, "local_challenge": 3, "viewer": 3, "inference": 4, "benchmarks": 4}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    modules = {}
    for top in LAYERS:
        if (REPO / f"{top}.py").is_file():
            modules[top] = REPO / f"{top}.py"
        for path in sorted((REPO / top).rglob("*.py")) if (REPO / top).is_dir() else []:
            if "__pycache__" not in path.parts:
                modules[_module_name(path)] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that ``name`` imports (the longest known prefix of each import)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            parts = target.split(".")
            for n in range(len(parts), 0, -1):
                candidate = ".".join(parts[:n])
                if candidate in known:
                    if candidate != name:
                        found.add(candidate)
                    break
    return found


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def test_no_import_runs_back_up():
    modules = project_modules()
    known = set(modules)
    upward = [f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
              for name, path in modules.items() for target in sorted(imports_of(name, path, known))
              if _layer(target) > _layer(name)]
    assert upward == [], "\n".join(upward)


def test_no_circle_of_imports():
    modules = project_modules()
    known = set(modules)
    graph = {name: imports_of(name, path, known) for name, path in modules.items()}
    # a package's __init__ importing its own modules is not a circle of files (a module importing
    # its package's __init__ for a name would be: both are kept)
    circles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert circles == [], "\n".join(" -> ".join(c) for c in circles)
