"""Imports inside the package point one way: from the top layers down, never back up.

The layers are the architecture (storage and executors know nothing of tasks; tasks
nothing of the scheduler; nothing below the command line prints). A new module must be
given a layer here, which is the moment to decide where it belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pydatatask"

LAYERS: list[tuple[str, ...]] = [
    # 0: foundations, with no pydatatask imports of consequence
    (
        "errors",
        "_optional",
        "streams",
        "yamltext",
        "controller",
        "jobstate",
        "report",
        "setexpr",
        "codecs",
        "survivors",
    ),
    # 1: where data lives and where jobs run, and what a job may use of a quota
    ("repository", "executor", "records", "quota"),
    # 2: what tasks are wired and rendered with
    ("link", "templating"),
    # 3: tasks
    ("task",),
    # 4: running a pipeline
    (
        "readiness",
        "provenance",
        "watching",
        "leases",
        "presence",
        "plans",
        "runner",
        "scheduler",
        "running",
        "target",
        "session",
        "pipeline",
        "graph",
    ),
    # 5: looking at a pipeline and showing it
    ("overview", "admin", "progress", "config", "web"),
    # 6: the command line, and 0.4's functions that print like it (over admin and pipeline)
    ("arguments", "cli", "command", "compat", "__main__"),
    # 7: what third parties import to test their backends, and the package's face
    ("testing", "__init__"),
]


def layer_of(module: str) -> int:
    """Return the layer of ``pydatatask.X...`` by its first component."""
    first = module.split(".")[1] if module.count(".") else "__init__"
    for number, names in enumerate(LAYERS):
        if first in names:
            return number
    raise AssertionError(f"{module} has no layer: add it to LAYERS in {__file__}")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """Return the pydatatask modules ``path`` imports outside ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for inner in node.body for child in ast.walk(inner))
    found: set[str] = set()
    package = module_name(path)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("pydatatask"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:  # relative imports are not used, but resolve them anyway
                base = package.split(".")[: -node.level or None]
                found.add(".".join([*base, node.module]))
            elif node.module.startswith("pydatatask"):
                if node.module == "pydatatask":
                    found.update(f"pydatatask.{alias.name}" for alias in node.names)
                else:
                    found.add(node.module)
    return found


def test_every_import_points_down_or_across() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        if importer == "pydatatask":
            continue  # the package's face re-exports every layer, lazily where needed
        mine = layer_of(importer)
        for imported in runtime_imports(path):
            if imported == "pydatatask":
                continue
            if layer_of(imported) > mine:
                upward.append(f"{importer} (layer {mine}) imports {imported}")
    assert upward == []


def test_storage_and_executors_know_nothing_of_tasks() -> None:
    for folder in ("repository", "executor"):
        for path in (PACKAGE / folder).rglob("*.py"):
            for imported in runtime_imports(path):
                assert not imported.startswith(("pydatatask.task", "pydatatask.scheduler")), (
                    f"{module_name(path)} imports {imported}"
                )
