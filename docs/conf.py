"""Sphinx configuration for kubepki's documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``; doctests:
``sphinx-build -b doctest docs docs/_build/doctest`` (or ``nox -s docs``). The
build needs no network: nothing is fetched (no intersphinx).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The repository root (kubepki from a checkout, not only when installed) and the
# local extension that renders the catalog, findings, JSON schema and CLI pages.
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]

import kubepki  # noqa: E402 - needs the path above

project = "kubepki"
author = "kubepki developers"
copyright = "kubepki developers"
release = kubepki.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "kubepki_catalog",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
# notebooks/ holds the tour notebook, offered for download from notebook.md (and run by
# tests/test_notebook.py), not parsed as a page.
exclude_patterns = ["_build", "schema", "notebooks", "Thumbs.db", ".DS_Store"]

# MyST: ::: fences for directives that hold Markdown, and heading anchors so
# pages can link to [a section](page.md#anchor).
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: the API is documented under its public names (kubepki.Inventory);
# the kubepki_catalog extension links the modules' own names to them.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# Enum members and attrs fields are the API even without a comment of their own.
# (No autodoc_preserve_defaults: on attrs classes it shows attrs' generated code.)
autodoc_default_options = {"show-inheritance": True, "undoc-members": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Types in signatures that are not documented here (datetime, Path, attrs...)
# stay plain text instead of warning: there is no intersphinx to link them to.
nitpicky = False

# The doctest builder runs ```{doctest} blocks and the >>> examples of the
# docstrings autodoc pulls in; each page starts from a fresh namespace.
doctest_global_setup = """
import kubepki
from kubepki import catalog
"""

html_theme = "furo"
html_title = "kubepki"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": True}

# Pages colleagues write alongside these: until one exists, the kubepki_catalog
# extension drops it from toctrees and turns links to it into plain text, so the
# -W build passes before and after it lands.
kubepki_optional_pages = ["renewal", "backup", "restarts", "secrets", "cri"]
