"""kubepki's development sessions: ``nox`` runs lint, typecheck and tests.

Each session installs what it needs from ``pyproject.toml`` into its own
virtualenv, so a fresh machine needs only ``pip install nox``. The sessions pin
Python 3.11; run them with another interpreter through nox's own option, e.g.
``nox -s tests --force-python python3``. Arguments after ``--`` go to the tool:
``nox -s tests -- -k catalog -x``.
"""

from __future__ import annotations

import nox

PYTHON = "3.11"
#: What ruff checks; docs/_ext is the Sphinx extension that renders the catalog.
LINT_PATHS = ("kubepki", "tests", "benchmarks", "noxfile.py", "docs/conf.py", "docs/_ext")

nox.options.sessions = ["lint", "typecheck", "tests"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (``nox -s tests -- <pytest arguments>``)."""
    session.install(".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Run ruff over the code, the tests, the benchmarks and the docs' Python."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *LINT_PATHS, *session.posargs)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Run ``mypy --strict`` on the package (settings in pyproject.toml)."""
    # The test extra brings the package's dependencies (attrs, cryptography...) and
    # the optional integrations its modules import (prometheus-client), whose
    # inline types mypy needs; PyYAML's come from types-PyYAML.
    session.install(".[test]", "mypy>=1.10", "types-PyYAML")
    session.run("mypy", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the HTML docs with warnings as errors, then run their doctests."""
    session.install(".[docs]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("sphinx-build", "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session(python=PYTHON)
def protos(session: nox.Session) -> None:
    """Regenerate kubepki/restarts/methods/_cri_api/api_pb2*.py* from its api.proto."""
    # grpcio-tools 1.62 bundles protoc 25: its output runs on protobuf >= 4.25 and
    # grpcio >= 1.60 (the `cri` extra's floors); newer generators add version checks
    # that would raise them. The generated files are committed.
    session.install("grpcio-tools==1.62.3")
    session.run(
        "python", "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=.", "--grpc_python_out=.",
        "kubepki/restarts/methods/_cri_api/api.proto",
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks with pytest-benchmark (``-- --benchmark-autosave`` to keep them)."""
    session.install(".[test]")
    session.run(
        "python", "-m", "pytest", "benchmarks", "--benchmark-only", "-p", "no:cacheprovider",
        *session.posargs,
    )
