"""An expiry timeline: every certificate as a bar from NotBefore to NotAfter.

Needs matplotlib (``pip install 'kubepki[notebook]'``); it is imported only when a
picture is asked for, so ``import kubepki`` stays light. The figure is built on
:class:`matplotlib.figure.Figure` directly, not through ``pyplot``, so it works
with any backend (``Agg`` on a server) and leaves no global state behind.

>>> import datetime as dt, tempfile, kubepki
>>> from kubepki import testing
>>> when = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
>>> inv = kubepki.inspect(testing.build_node(tempfile.mkdtemp(), issued_at=when).root, now=when)
>>> fig = inv.timeline(path=tempfile.mkdtemp() + "/expiry.png")   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

import attrs

from kubepki.catalog import Kind, Scope
from kubepki.errors import ConfigError
from kubepki.inspection._findings import Status
from kubepki.inspection._render import _STATUS_STYLE, short_human_duration

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from kubepki.inspection._inventory import Inventory, InventoryItem

__all__ = ["Bar", "bars", "timeline"]

#: Group of certificates that no catalog CA signs (the kubelet's self-signed serving cert).
SELF_SIGNED = "self-signed"
_NOW_COLOUR = "#0969da"
_WARN_COLOUR = "#d4a72c"
_GRID_COLOUR = "#d0d7de"


@attrs.frozen(kw_only=True)
class Bar:
    """One bar of the timeline: a certificate on one node, or a shared one on several."""

    #: The signing CA's catalog name (a CA's own name for the CA; ``self-signed`` otherwise).
    group: str
    #: The catalog name.
    name: str
    #: The nodes the bar stands for (several for a shared item identical on each).
    nodes: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    status: Status
    is_ca: bool


def _is_inventory(obj: object) -> TypeGuard[Inventory]:
    # Recognised by shape: Inventory's own timeline() calls this module, so importing
    # Inventory here would make the two modules an import cycle.
    return isinstance(getattr(obj, "items", None), tuple) and hasattr(obj, "warn_within")


def _inventories(source: Inventory | Iterable[Inventory]) -> list[Inventory]:
    if _is_inventory(source):
        return [source]
    given = list(source)
    out = [i for i in given if _is_inventory(i)]
    if not out or len(out) != len(given):
        raise ConfigError("timeline() takes an Inventory or a non-empty sequence of Inventories")
    return out


def _group(item: InventoryItem) -> str:
    if item.entry.is_ca:
        return item.name
    return item.signer or SELF_SIGNED


def bars(source: Inventory | Iterable[Inventory]) -> tuple[list[Bar], list[str]]:
    """The bars :func:`timeline` draws, grouped by signer, and what it leaves out.

    Returns ``(bars, left_out)``: bars in drawing order (each CA's group: the CA,
    then what it signs, in catalog order; self-signed certificates last), and one
    ``"name (why)"`` line per item without a certificate to draw (key pairs,
    required items that are missing, unreadable or damaged ones), naming the
    nodes unless it is so on all of them. A shared item (a CA, ``sa``) that is
    byte-identical on several nodes becomes one bar naming them all.
    """
    inventories = _inventories(source)
    order: dict[str, int] = {}
    merged: dict[tuple[str, str], Bar] = {}
    undrawn: dict[tuple[str, str], list[str]] = {}
    for idx, inv in enumerate(inventories):
        node = inv.node or f"node{idx + 1}"
        for item in inv.items:
            order.setdefault(item.name, len(order))
            if item.facts is None:
                if item.status is Status.MISSING and not item.entry.required:
                    continue  # optional and absent, as the check tables leave it out
                why = "key pair" if item.kind is Kind.KEYPAIR else item.status.value
                undrawn.setdefault((item.name, why), []).append(node)
                continue
            shared = item.scope is Scope.SHARED
            key = (item.name, item.facts.fingerprint_sha256 if shared else node)
            found = merged.get(key)
            if found is not None:
                merged[key] = attrs.evolve(found, nodes=(*found.nodes, node))
                continue
            merged[key] = Bar(group=_group(item), name=item.name, nodes=(node,),
                              not_before=item.facts.not_before, not_after=item.facts.not_after,
                              status=item.status, is_ca=item.entry.is_ca)
    # The catalog lists CAs first, so groups follow the catalog; self-signed goes last.
    rank: dict[str, tuple[bool, int]] = {}
    for bar in sorted(merged.values(), key=lambda b: order[b.name]):
        rank.setdefault(bar.group, (bar.group == SELF_SIGNED, len(rank)))
    out = sorted(merged.values(), key=lambda b: (rank[b.group], not b.is_ca, order[b.name], b.nodes))
    left_out = [
        f"{name} ({why})" + ("" if len(nodes) == len(inventories) else f" on {', '.join(nodes)}")
        for (name, why), nodes in sorted(undrawn.items(), key=lambda kv: order[kv[0][0]])
    ]
    return out, left_out


def _label(bar: Bar, node_count: int) -> str:
    if node_count <= 1:
        return bar.name
    if len(bar.nodes) == node_count:
        return f"{bar.name} · all nodes"
    return f"{bar.name} · {', '.join(bar.nodes)}"


def timeline(  # noqa: C901, PLR0912, PLR0915  -- one figure drawn top to bottom
    inventories: Inventory | Sequence[Inventory],
    *,
    now: dt.datetime | None = None,
    warn_within: dt.timedelta | None = None,
    ax: Axes | None = None,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Draw each certificate as a bar from NotBefore to NotAfter, grouped by signer.

    ``inventories`` is one :class:`~kubepki.Inventory` or several (one per node).
    Bars are coloured by the item's status as inspected (the colours of the HTML
    tables), labelled with the time left, and grouped under the CA that signs them;
    a vertical line marks ``now`` (default: the first inventory's ``now``) and a
    shaded band the warning window up to ``now + warn_within`` (default: the
    inventory's ``warn_within``). Items without a certificate (``sa``, missing or
    unreadable ones) are listed under the picture.

    Draws into ``ax`` when given, else into a new figure sized to the number of
    bars; with ``path``, also saves the figure there (PNG, or the format the
    suffix names). Returns the figure.

    Raises :class:`~kubepki.ConfigError` when matplotlib is not installed or
    ``inventories`` is empty.
    """
    try:
        # matplotlib.dates has no type annotations; as Any, mypy --strict accepts its calls.
        mdates: Any = importlib.import_module("matplotlib.dates")
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        raise ConfigError("the timeline needs matplotlib: pip install 'kubepki[notebook]'") from None

    invs = _inventories(inventories)
    first = invs[0]
    when = (now or first.now).astimezone(dt.timezone.utc)
    window = first.warn_within if warn_within is None else warn_within
    drawn, left_out = bars(invs)
    node_count = len(invs)

    rows: list[tuple[str, Bar | None]] = []  # group headers (None) and bars, top to bottom
    group: str | None = None
    for bar in drawn:
        if bar.group != group:
            group = bar.group
            rows.append((group, None))
        rows.append((_label(bar, node_count), bar))

    if ax is None:
        height = 1.6 + 0.28 * max(len(rows), 4) + (0.18 * min(len(left_out), 6) if left_out else 0)
        fig = Figure(figsize=(11, height), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = _root_figure(ax)

    lo, hi = _view(drawn, when, window)
    lo_num, hi_num = mdates.date2num(lo), mdates.date2num(hi)
    pad = (hi_num - lo_num) * 0.006

    ticks, labels, bold = [], [], []
    for y, (label, row) in enumerate(rows):
        ticks.append(y)
        if row is None:
            labels.append(f"signed by {label}" if label != SELF_SIGNED else "self-signed")
            bold.append(True)
            if y:
                ax.axhline(y - 0.5, color=_GRID_COLOUR, linewidth=0.8)
            continue
        labels.append(label)
        bold.append(False)
        bar = row
        left = mdates.date2num(bar.not_before)
        right = mdates.date2num(bar.not_after)
        ax.barh(y, right - left, left=left, height=0.62, color=_STATUS_STYLE[bar.status],
                edgecolor="black" if bar.is_ca else "none", linewidth=0.6 if bar.is_ca else 0)
        text = _left(bar.not_after - when)
        if right > hi_num:  # a CA running past the view: say so at the edge
            ax.text(hi_num - pad, y, f"{text} →", va="center", ha="right", fontsize=8,
                    color="white", fontweight="bold")
        else:
            ax.text(right + pad, y, text, va="center", ha="left", fontsize=8, color="#424a53",
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.85})

    now_num = mdates.date2num(when)
    ax.axvspan(now_num, mdates.date2num(when + window), color=_WARN_COLOUR, alpha=0.22, linewidth=0)
    ax.axvline(mdates.date2num(when + window), color=_WARN_COLOUR, linestyle="--", linewidth=1.2)
    ax.axvline(now_num, color=_NOW_COLOUR, linewidth=1.6)
    ax.text(now_num + pad, 0, "now", color=_NOW_COLOUR, fontsize=9, fontweight="bold", va="center")

    ax.set_yticks(ticks, labels)
    for tick, is_header in zip(ax.get_yticklabels(), bold, strict=True):
        if is_header:
            tick.set_fontweight("bold")
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlim(lo_num, hi_num)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(axis="x", color=_GRID_COLOUR, linewidth=0.6)
    ax.set_axisbelow(True)
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    nodes = ", ".join(i.node or "?" for i in invs)
    ax.set_title(title if title is not None else
                 f"Certificate validity — node{'s' if node_count > 1 else ''} {nodes}, "
                 f"as of {when:%Y-%m-%d %H:%M} UTC", loc="left", fontsize=11)

    shown = [s for s in Status if any(b.status is s for b in drawn)]
    handles: list[Artist] = [Patch(color=_STATUS_STYLE[s], label=s.value) for s in shown]
    handles += [Line2D([], [], color=_NOW_COLOUR, linewidth=1.6, label="now"),
                Patch(color=_WARN_COLOUR, alpha=0.35, label=f"warning window ({_days(window)})")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if left_out:
        more = f" and {len(left_out) - 6} more" if len(left_out) > 6 else ""
        ax.set_xlabel("no certificate to draw: " + "; ".join(left_out[:6]) + more,
                      fontsize=8, color="#57606a", loc="left")
    if path is not None:
        fig.savefig(path, dpi=110, facecolor="white")
    return fig


def _view(drawn: Sequence[Bar], now: dt.datetime, window: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    """The time range shown: every leaf, ``now`` and the warning window.

    CAs usually live ten times as long as their leaves; drawn to scale they would
    squeeze every leaf into a sliver, so they run off the right edge instead
    (labelled with their time left). Only CAs: everything is shown.
    """
    focus = [b for b in drawn if not b.is_ca] or list(drawn)
    lo = min([b.not_before for b in focus] + [now])
    hi = max([b.not_after for b in focus] + [now + window])
    span = hi - lo
    return lo - span * 0.03, hi + span * 0.08


def _left(span: dt.timedelta) -> str:
    seconds = span.total_seconds()
    if seconds < 0:
        return f"expired {short_human_duration(-seconds)} ago"
    return short_human_duration(seconds)


def _days(span: dt.timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:g} days" if days != 1 else "1 day"


def _root_figure(ax: Axes) -> Figure:
    from matplotlib.figure import Figure

    fig = ax.get_figure()
    while fig is not None and not isinstance(fig, Figure):
        fig = fig.get_figure()  # a SubFigure's parent
    if fig is None:
        raise ConfigError("the axes given to timeline() belong to no figure")
    return fig
