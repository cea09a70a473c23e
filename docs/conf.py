"""Sphinx configuration for the pydatatask documentation."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any, TypeVar

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

_PACKAGE_INIT = Path(__file__).resolve().parent.parent / "pydatatask" / "__init__.py"


def _package_constant(name: str) -> Any:
    """Return the literal value assigned to ``name`` in pydatatask/__init__.py, unimported."""
    for statement in ast.parse(_PACKAGE_INIT.read_text(encoding="utf-8")).body:
        if isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            if any(isinstance(target, ast.Name) and target.id == name for target in targets):
                assert statement.value is not None
                return ast.literal_eval(statement.value)
    raise LookupError(f"{_PACKAGE_INIT} assigns no {name}")


project = "pydatatask"
author = "The pydatatask developers"
copyright = "2026, The pydatatask developers"
release = _package_constant("__version__")
version = ".".join(release.split(".")[:2])
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
html_theme = "alabaster"
exclude_patterns = ["_build"]
suppress_warnings = ["ref.python"]

# Every cross-reference must resolve. Without network access there is no intersphinx
# inventory, so references into other packages (the standard library included) cannot
# resolve; they are ignored by module, and nothing else is.
nitpicky = True
_EXTERNAL_MODULES = [
    # The standard library.
    "abc",
    "asyncio",
    "_asyncio",
    "enum",
    "time",
    "rich",
    "collections",
    "concurrent",
    "contextlib",
    "datetime",
    "decimal",
    "os",
    "pathlib",
    "re",
    # Third-party packages.
    "_pytest",
    "aiodocker",
    "aiohttp",
    "asyncssh",
    "jinja2",
    "kubernetes_asyncio",
    "motor",
    "pymongo",
    "starlette",
    "uvicorn",
    "watchfiles",
]
nitpick_ignore_regex = [(r"py:.*", rf"{module}(\..+)?") for module in _EXTERNAL_MODULES]
# Names that annotations use unqualified (``from datetime import timedelta``, rich's Console).
nitpick_ignore = [
    ("py:class", "timedelta"),
    ("py:class", "Console"),
    ("py:class", "Starlette"),
    ("py:class", "ApiClient"),
]
# Private helpers (a leading underscore) are not documented, so a base class or a
# parameter type named after one stays plain text.
nitpick_ignore_regex.append(("py:class", r"pydatatask\..*\._[A-Za-z]\w*"))


def _lookup(target: str, module: str | None) -> Any:
    """Return the pydatatask object ``target`` names (from ``module``), or None."""
    candidates = [target] if target.startswith("pydatatask.") else []
    if module is not None and module.startswith("pydatatask"):
        candidates.append(f"{module}.{target}")
    for candidate in candidates:
        owner, _, name = candidate.rpartition(".")
        try:
            return getattr(importlib.import_module(owner), name)
        except (ImportError, AttributeError):
            continue
    return None


def _resolve_public_name(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.Element | None:
    """Resolve ``pydatatask.Name`` (and a bare ``Name``) to where ``Name`` is documented.

    Docstrings name public objects as users import them, from the package itself, while
    the API reference documents each in its module; the package's table of public names
    says which module that is. A type variable in a signature is a type parameter, not an
    object with documentation of its own, so it stays plain text.
    """
    if node.get("refdomain") != "py":
        return None
    target = str(node["reftarget"])
    if isinstance(_lookup(target, node.get("py:module")), TypeVar):
        return contnode
    name, _, rest = target.removeprefix("pydatatask.").partition(".")
    public: dict[str, str] = importlib.import_module("pydatatask")._PUBLIC
    if name not in public:
        return None
    value = getattr(importlib.import_module(public[name]), name)
    domain = env.get_domain("py")
    for module in dict.fromkeys([public[name], getattr(value, "__module__", public[name])]):
        qualified = ".".join(part for part in (module, name, rest) if part)
        found = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], qualified, node, contnode
        )
        if found is not None:
            return found
    return None


def setup(app: Sphinx) -> None:
    """Resolve references to the package's public names."""
    app.connect("missing-reference", _resolve_public_name)
