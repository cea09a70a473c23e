"""Sphinx configuration for the pydatatask documentation."""

from __future__ import annotations

project = "pydatatask"
author = "The pydatatask developers"
copyright = "2026, The pydatatask developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
suppress_warnings = ["ref.python"]
