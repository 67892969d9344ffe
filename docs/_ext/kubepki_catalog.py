"""Sphinx directives that render kubepki's reference pages from kubepki's own data.

The pages on the catalog, the finding codes, the JSON output and the command line
are generated, so they cannot drift from the code:

``{kubepki-catalog}``
    Tables from :data:`kubepki.catalog.CATALOG`. The ``:table:`` option picks one:
    ``artifacts`` (files, signer, scope, renewal, versions), ``profiles`` (subject,
    usages, SANs), ``consumers`` (who reads each artifact and how it reloads),
    ``components`` (the same, per component) or ``reload`` (the reload modes).
``{kubepki-findings}``
    The finding codes of :data:`kubepki.inspection._findings.CODES`.
``{kubepki-json-schema} POINTER``
    The properties of one object of ``docs/schema/check.schema.json``.
``{kubepki-cli}``
    The ``--help`` of ``kubepki`` and of every sub-command, from
    :func:`kubepki.cli.build_parser`.

The table builders are plain functions returning docutils nodes, so tests can
call them without running Sphinx. A ``missing-reference`` handler also lets
``kubepki.Inventory`` and ``kubepki.inspection._inventory.Inventory`` find each other: the
API is documented under its public names, the docstrings use either.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

import kubepki
from kubepki import catalog
from kubepki.catalog import CatalogEntry, Component, Consumer, Reload, SanRule, Versioned
from kubepki.inspection._findings import CODES
from kubepki.node._node import DEFAULT_DIRS
from kubepki.versions import OLDEST, KubeVersion

__all__ = [
    "CATALOG_TABLES",
    "artifacts_table",
    "cli_sections",
    "components_table",
    "consumers_table",
    "drop_missing_pages",
    "findings_table",
    "profiles_table",
    "reload_table",
    "schema_table",
    "setup",
]

#: What a table cell may be given as: text (with `code` spans), an inline node, or nodes.
Cell: TypeAlias = "str | nodes.Node | Sequence[nodes.Node]"

SCHEMA = Path(__file__).resolve().parent.parent / "schema" / "check.schema.json"
#: Width the CLI help is wrapped at, whatever terminal runs the build.
HELP_COLUMNS = 88


# --------------------------------------------------------------------------------------
# Generic table building


_CODE = re.compile(r"`([^`]*)`|(--[a-z][a-z0-9-]*)")


def _inline(text: str) -> list[nodes.Node]:
    """Text with ``code`` spans (single backticks, as in the schema) and flags as literals.

    Flags must be literals: smart quotes would turn the ``--`` of bare text into a dash.
    """
    out: list[nodes.Node] = []
    pos = 0
    for match in _CODE.finditer(text):
        if match.start() > pos:
            out.append(nodes.Text(text[pos:match.start()]))
        code = match.group(1) if match.group(1) is not None else match.group(2)
        out.append(nodes.literal(code, code))
        pos = match.end()
    if pos < len(text):
        out.append(nodes.Text(text[pos:]))
    return out


def _lit(text: str) -> nodes.literal:
    return nodes.literal(text, text)


def _para(content: Cell) -> list[nodes.Node]:
    if isinstance(content, str):
        return [nodes.paragraph("", "", *_inline(content))] if content else []
    if isinstance(content, nodes.Node):
        content = [content]
    body = list(content)
    if all(isinstance(n, nodes.Inline | nodes.Text) for n in body):
        return [nodes.paragraph("", "", *body)] if body else []
    return body


def _lines(parts: Iterable[Sequence[nodes.Node]]) -> nodes.line_block:
    """One line per entry, for cells that list several things."""
    block = nodes.line_block()
    for part in parts:
        block += nodes.line("", "", *part)
    return block


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    widths: Sequence[int] | None = None,
    classes: Sequence[str] = (),
) -> nodes.table:
    """A docutils table with a header row; cells are text, an inline node or nodes."""
    table = nodes.table(classes=["kubepki-table", *classes])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths or [1] * len(headers):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    head += _row(headers)
    body = nodes.tbody()
    group += body
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells for {len(headers)} columns: {row!r}")
        body += _row(row)
    return table


def _row(cells: Sequence[Cell]) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry.extend(_para(cell))
        row += entry
    return row


# --------------------------------------------------------------------------------------
# The catalog


def _version_range(since: KubeVersion, until: KubeVersion | None) -> str:
    if until is None:
        return "all" if since <= OLDEST else f"≥ {since}"
    if since <= OLDEST:
        return f"< {until}"
    return f"{since} to < {until}"


def _versioned(value: Versioned) -> list[nodes.Node]:
    span = _version_range(value.since, value.until)
    return [_lit(value.value)] + ([] if span == "all" else [nodes.Text(f" ({span})")])


def _files(entry: CatalogEntry) -> nodes.Node:
    base = DEFAULT_DIRS[entry.location.value]
    return _lines(
        [_lit(f"{base}/{f.path}"), nodes.Text(f" {f.mode:04o}")] for f in entry.files
    )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _roles(entry: CatalogEntry) -> str:
    """The roles that have the entry, in NodeRole order; "certificate only" where the key is not there."""
    out = []
    for role in catalog.NodeRole:
        if role in entry.roles:
            out.append(f"{role.value} (certificate only)" if role in entry.cert_only_on else role.value)
    return ", ".join(out)


def artifacts_table(entries: Sequence[CatalogEntry] = catalog.CATALOG) -> nodes.table:
    """Name, kind, files, signer, scope, renewal and versions of each entry."""
    rows = []
    for e in entries:
        versions = _version_range(e.since, e.until)
        if e.local_etcd_only:
            versions += ", local etcd only"
        rows.append([
            [_lit(e.name)],
            e.kind.value,
            _files(e),
            [_lit(e.signer)] if e.signer else "none",
            e.scope.value,
            _yes(e.renewable),
            _yes(e.required),
            versions,
            _roles(e),
            e.description,
        ])
    return _table(
        ["Name", "Kind", "Files (default path, mode)", "Signer", "Scope", "Renewable",
         "Required", "kubeadm", "Node roles", "What it is"],
        rows,
        widths=[14, 8, 26, 10, 6, 7, 7, 9, 10, 23],
        classes=["kubepki-catalog"],
    )


def _sans(rule: SanRule) -> Cell:
    if rule.empty:
        return "none"
    parts: list[list[nodes.Node]] = []
    if rule.dns:
        parts.append([nodes.Text("DNS: "), *_joined(rule.dns)])
    if rule.ip:
        parts.append([nodes.Text("IP: "), *_joined(rule.ip)])
    if rule.from_config:
        parts.append([nodes.Text("plus config: "), *_joined(rule.from_config)])
    if rule.fixed:
        parts.append([nodes.Text("(nothing else)")])
    return _lines(parts)


def _joined(values: Iterable[str]) -> list[nodes.Node]:
    out: list[nodes.Node] = []
    for i, value in enumerate(values):
        if i:
            out.append(nodes.Text(", "))
        out.append(_lit(value))
    return out


def profiles_table(entries: Sequence[CatalogEntry] = catalog.CATALOG) -> nodes.table:
    """Subject (CN, O by version), key usages, extended key usages and SANs of each entry."""
    rows = []
    for e in entries:
        subject = e.subject
        cn: Cell = [_lit(subject.common_name)] if subject else "—"
        orgs: Cell = (
            _lines(_versioned(o) for o in subject.organizations)
            if subject and subject.organizations else "none"
        )
        rows.append([
            [_lit(e.name)],
            cn,
            orgs,
            _joined(sorted(k.value for k in e.key_usages)) or "—",
            _joined(sorted(k.value for k in e.extended_key_usages)) or "—",
            _sans(e.sans) if subject else "—",
        ])
    return _table(
        ["Name", "CN", "O (kubeadm versions)", "Key usage", "Extended key usage", "SANs"],
        rows,
        widths=[14, 16, 18, 18, 12, 30],
        classes=["kubepki-catalog"],
    )


def _reload(consumer: Consumer) -> list[nodes.Node]:
    out: list[nodes.Node] = [_lit(consumer.reload.value)]
    if consumer.since > OLDEST:
        out.append(nodes.Text(f" (from {consumer.since}; restart before)"))
    elif consumer.reload is not Reload.RESTART and consumer.since != OLDEST:
        out.append(nodes.Text(f" (since {consumer.since})"))
    return out


def consumers_table(entries: Sequence[CatalogEntry] = catalog.CATALOG) -> nodes.table:
    """One row per (entry, consumer): component, flag, reload behaviour and note."""
    rows = []
    for e in entries:
        if not e.consumers:
            rows.append([[_lit(e.name)], "—", "—", "—", ""])
        for c in e.consumers:
            rows.append([[_lit(e.name)], [_lit(c.component.value)], [_lit(c.flag)], _reload(c),
                         c.note])
    return _table(
        ["Name", "Component", "Flag or field", "Reload", "Note"],
        rows,
        widths=[14, 16, 24, 18, 28],
        classes=["kubepki-catalog"],
    )


def components_table(entries: Sequence[CatalogEntry] = catalog.CATALOG) -> nodes.table:
    """Per component: what it reads, through which flag, and whether it must restart."""
    rows = []
    for component in Component:
        used = [(e, c) for e in entries for c in e.consumers_of(component)]
        for i, (e, c) in enumerate(used):
            rows.append([
                [_lit(component.value)] if i == 0 else "",
                [_lit(e.name)],
                [_lit(c.flag)],
                _reload(c),
                _yes(c.reload.needs_restart),
            ])
    return _table(
        ["Component", "Reads", "Flag or field", "Reload", "Restart needed"],
        rows,
        widths=[18, 20, 26, 22, 8],
        classes=["kubepki-catalog"],
    )


def reload_table() -> nodes.table:
    """The reload modes with the explanation from :class:`kubepki.catalog.Reload`'s source."""
    docs = ModuleAnalyzer.for_module(catalog.__name__).find_attr_docs()
    rows = []
    for mode in Reload:
        text = " ".join(line.strip() for line in docs.get(("Reload", mode.name), [])).strip()
        rows.append([[_lit(mode.value)], text, _yes(mode.needs_restart)])
    return _table(["Reload", "Meaning", "Restart needed"], rows, widths=[16, 60, 10])


CATALOG_TABLES = {
    "artifacts": artifacts_table,
    "profiles": profiles_table,
    "consumers": consumers_table,
    "components": components_table,
    "reload": reload_table,
}


# --------------------------------------------------------------------------------------
# Findings and the JSON schema


def findings_table(codes: Mapping[str, tuple[Any, str]] = CODES) -> nodes.table:
    """Code, usual severity and meaning of every finding code."""
    rows = [[[_lit(code)], severity.value, meaning] for code, (severity, meaning) in codes.items()]
    return _table(["Code", "Severity", "Meaning"], rows, widths=[22, 10, 60])


def _resolve(schema: Mapping[str, Any], pointer: str) -> Mapping[str, Any]:
    node: Any = schema
    for part in pointer.lstrip("#").strip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node  # type: ignore[no-any-return]


def _type_of(schema: Mapping[str, Any], prop: Mapping[str, Any]) -> str:
    if "$ref" in prop:
        target = _resolve(schema, prop["$ref"])
        name = prop["$ref"].rsplit("/", 1)[-1]
        if "oneOf" in target:
            return _type_of(schema, target)
        named = {"timestamp": "string (ISO 8601 UTC)", "count": "integer",
                 "strings": "array of strings", "sha256": "string (hex)"}
        if name in named:
            return named[name]
        return f"{name} object" if target.get("type") == "object" else _type_of(schema, target)
    if "oneOf" in prop:
        return " or ".join(_type_of(schema, alt) for alt in prop["oneOf"])
    kind = prop.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds and "items" in prop:
        items = prop["items"]
        inner = _type_of(schema, items)
        return f"array of {inner}s"
    return " or ".join(kinds)


def schema_table(pointer: str = "#", schema: Mapping[str, Any] | None = None) -> nodes.table:
    """Field, type, allowed values and description of the object at ``pointer``."""
    if schema is None:
        schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    obj = _resolve(schema, pointer)
    required = set(obj.get("required", ()))
    rows = []
    for name, prop in obj["properties"].items():
        values = prop.get("enum")
        rows.append([
            [_lit(name)],
            _type_of(schema, prop) + ("" if name in required else ", optional"),
            _joined(str(v) for v in values) if values else "",
            prop.get("description", ""),
        ])
    return _table(["Field", "Type", "Values", "Meaning"], rows, widths=[18, 18, 22, 50])


# --------------------------------------------------------------------------------------
# The command line


@contextlib.contextmanager
def _plain_help(width: int) -> Iterator[None]:
    """Help text that does not depend on the terminal running the build.

    argparse wraps to ``$COLUMNS``, and from Python 3.14 colours its help when
    stdout is a terminal unless ``NO_COLOR`` is set.
    """
    wanted = {"COLUMNS": str(width), "NO_COLOR": "1", "PYTHON_COLORS": "0"}
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse offers no public way to walk sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    seen: set[int] = set()
    for name, sub in _subcommands(parser).items():
        if id(sub) not in seen:  # aliases map several names to one parser
            seen.add(id(sub))
            yield from _walk(sub, (*path, name))


def cli_sections(
    parser: argparse.ArgumentParser, document: nodes.document | None = None
) -> list[nodes.section]:
    """One section per command (``kubepki``, ``kubepki check``...) holding its ``--help``.

    Titles are the command names, not argparse's ``prog``: a parent with a custom
    ``usage`` leaks it into its sub-commands' ``prog``.
    """
    out = []
    with _plain_help(HELP_COLUMNS):
        for path, p in _walk(parser, (parser.prog,)):
            command = " ".join(path)
            section = nodes.section(ids=[nodes.make_id(f"cli-{command}")], names=[command])
            section += nodes.title("", "", _lit(command))
            text = p.format_help().rstrip() + "\n"
            section += nodes.literal_block(text, text, language="text")
            if document is not None:
                document.note_implicit_target(section, section)
            out.append(section)
    return out


# --------------------------------------------------------------------------------------
# Directives


class CatalogDirective(SphinxDirective):
    """``{kubepki-catalog}`` with ``:table: artifacts|profiles|consumers|components|reload``."""

    has_content = False
    option_spec = {  # noqa: RUF012 - docutils reads it as a plain class attribute
        "table": lambda arg: directives.choice(arg, tuple(CATALOG_TABLES)),
    }

    def run(self) -> list[nodes.Node]:
        return [CATALOG_TABLES[self.options.get("table", "artifacts")]()]


class FindingsDirective(SphinxDirective):
    """``{kubepki-findings}``: the finding codes."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        return [findings_table()]


class SchemaDirective(SphinxDirective):
    """``{kubepki-json-schema} #/$defs/item``: one object of the JSON schema."""

    has_content = False
    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(SCHEMA))
        pointer = self.arguments[0] if self.arguments else "#"
        try:
            return [schema_table(pointer)]
        except (KeyError, TypeError) as exc:
            raise self.error(f"no object at {pointer!r} in {SCHEMA.name}: {exc}") from None


class CliDirective(SphinxDirective):
    """``{kubepki-cli}``: every command's ``--help``, as sections."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from kubepki.cli import build_parser

        return list(cli_sections(build_parser(), self.state.document))


# --------------------------------------------------------------------------------------
# Public and canonical names


def _aliases() -> dict[str, str]:
    """``kubepki.X`` <-> ``kubepki.<module>.X`` for every public name."""
    out: dict[str, str] = {}
    for name in kubepki.__all__:
        obj = getattr(kubepki, name)
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(qualname, str):
            continue
        canonical, public = f"{module}.{qualname}", f"kubepki.{name}"
        if canonical != public:
            out[canonical] = public
            out[public] = canonical
    return out


_ALIASES = _aliases()


def _alternatives(target: str) -> Iterator[str]:
    for name, other in _ALIASES.items():
        if target == name or target.startswith(name + "."):
            yield other + target[len(name):]


def _missing_reference(
    app: Sphinx, env: BuildEnvironment, node: Any, contnode: nodes.Element
) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    for alt in _alternatives(node.get("reftarget", "")):
        found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], alt,
                                    node, contnode)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------------------
# Pages that may not exist yet


def drop_missing_pages(text: str, missing: Iterable[str]) -> str:
    """``text`` without toctree lines naming a ``missing`` page, links to it made plain."""
    for page in missing:
        name = re.escape(page)
        text = re.sub(rf"(?m)^[ \t]*{name}(?:\.md)?[ \t]*\n", "", text)
        text = re.sub(rf"\[([^\]]+)\]\((?:\.\./)?{name}\.md(?:#[^)]*)?\)", r"\1", text)
    return text


def _source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    srcdir = Path(app.srcdir)
    missing = [p for p in app.config.kubepki_optional_pages if not (srcdir / f"{p}.md").exists()]
    if missing:
        source[0] = drop_missing_pages(source[0], missing)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives and the reference resolver."""
    app.add_config_value("kubepki_optional_pages", [], "env", types=[list])
    app.connect("source-read", _source_read)
    app.add_directive("kubepki-catalog", CatalogDirective)
    app.add_directive("kubepki-findings", FindingsDirective)
    app.add_directive("kubepki-json-schema", SchemaDirective)
    app.add_directive("kubepki-cli", CliDirective)
    app.connect("missing-reference", _missing_reference)
    return {"version": kubepki.__version__, "parallel_read_safe": True,
            "parallel_write_safe": True}
