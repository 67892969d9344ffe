"""The expiry timeline: a real PNG, one bar per certificate, now and the warning window marked."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import kubepki
from kubepki import testing
from kubepki.errors import ConfigError
from kubepki.inspection._findings import Status
from kubepki.inspection._render import _STATUS_STYLE
from kubepki.testing import Defect, DefectKind

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from kubepki.inspection.timeline import bars, timeline  # noqa: E402

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ISSUED = NOW - dt.timedelta(days=350)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> kubepki.Inventory:
    """One node close to expiry, with front-proxy-client already expired."""
    node = testing.build_node(tmp_path_factory.mktemp("tl"), issued_at=ISSUED,
                              defects=[Defect(DefectKind.EXPIRED, "front-proxy-client")])
    return kubepki.inspect(node.root, now=NOW)


def _bars(fig: Figure) -> list[Rectangle]:
    ax = fig.axes[0]
    return [patch for container in ax.containers for patch in container]  # type: ignore[attr-defined]


def _certificates(inv: kubepki.Inventory) -> list[kubepki.InventoryItem]:
    return [item for item in inv if item.not_after is not None]


def test_png_is_written_and_not_blank(inventory: kubepki.Inventory, tmp_path: Path) -> None:
    """path= writes a real PNG of a sensible size with the status colours in it."""
    target = tmp_path / "expiry.png"
    timeline(inventory, path=target)
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
    pixels = imread(target)
    height, width = pixels.shape[:2]
    assert width >= 800
    assert height >= 400
    colours = {to_hex(tuple(px[:3])) for px in pixels.reshape(-1, pixels.shape[2])[::7]}
    assert _STATUS_STYLE[Status.EXPIRED] in colours  # the expired bar is drawn in red
    assert _STATUS_STYLE[Status.WARNING] in colours


def test_one_bar_per_certificate(inventory: kubepki.Inventory) -> None:
    """Every item with a certificate is one bar; sa (a key pair) is not drawn but named."""
    fig = timeline(inventory)
    assert len(_bars(fig)) == len(_certificates(inventory)) == len(inventory) - 1
    assert "sa (key pair)" in fig.axes[0].get_xlabel()


def test_bars_span_not_before_to_not_after_in_status_colour(inventory: kubepki.Inventory) -> None:
    """Each bar runs from NotBefore to NotAfter and has its item's status colour."""
    import matplotlib.dates as mdates

    fig = timeline(inventory)
    drawn, _ = bars(inventory)
    for bar, patch in zip(drawn, _bars(fig), strict=True):
        assert patch.get_x() == pytest.approx(mdates.date2num(bar.not_before))
        assert patch.get_x() + patch.get_width() == pytest.approx(mdates.date2num(bar.not_after))
        assert to_hex(patch.get_facecolor()) == _STATUS_STYLE[bar.status]
    expired = [b for b in drawn if b.status is Status.EXPIRED]
    assert [b.name for b in expired] == ["front-proxy-client"]


def test_now_line_and_warning_window(inventory: kubepki.Inventory) -> None:
    """A vertical line at now, and a shaded band from now to now + warn_within."""
    import matplotlib.dates as mdates

    fig = timeline(inventory, warn_within=dt.timedelta(days=45))
    ax = fig.axes[0]
    now = mdates.date2num(NOW)
    verticals = [line.get_xdata()[0] for line in ax.get_lines()]  # type: ignore[index]
    assert now in verticals
    assert mdates.date2num(NOW + dt.timedelta(days=45)) in verticals
    bands = [p for p in ax.patches if p not in _bars(fig) and p.get_width() == pytest.approx(45)]
    assert len(bands) == 1
    assert bands[0].get_x() == pytest.approx(now)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "now" in legend
    assert "warning window (45 days)" in legend


def test_grouped_by_signer(inventory: kubepki.Inventory) -> None:
    """Bars come in signer groups, each CA first, self-signed last."""
    drawn, _ = bars(inventory)
    groups = list(dict.fromkeys(b.group for b in drawn))
    assert groups == ["ca", "front-proxy-ca", "etcd-ca", "self-signed"]
    for group in groups[:-1]:
        first = next(b for b in drawn if b.group == group)
        assert first.name == group
        assert first.is_ca
    assert all(b.group == "etcd-ca" for b in drawn if b.name.startswith("etcd-") and not b.is_ca)
    labels = [t.get_text() for t in timeline(inventory).axes[0].get_yticklabels()]
    assert "signed by front-proxy-ca" in labels


def test_several_nodes_share_their_ca_bars(tmp_path: Path) -> None:
    """Identical shared CAs are one bar for all nodes; node certificates one bar per node."""
    cluster = testing.build_cluster(tmp_path / "c", nodes=2, issued_at=ISSUED)
    invs = [kubepki.inspect(n.root, now=NOW) for n in cluster.nodes]
    drawn, _ = bars(invs)
    ca = [b for b in drawn if b.name == "ca"]
    assert len(ca) == 1
    assert ca[0].nodes == ("cp1", "cp2")
    assert sorted(b.nodes for b in drawn if b.name == "apiserver") == [("cp1",), ("cp2",)]
    fig = timeline(invs)
    per_node = sum(len(_certificates(i)) for i in invs)
    assert len(_bars(fig)) == per_node - 3  # the three CAs drawn once instead of twice
    assert "ca · all nodes" in [t.get_text() for t in fig.axes[0].get_yticklabels()]


def test_draws_into_given_axes(inventory: kubepki.Inventory) -> None:
    """With ax=, the picture goes into that axes and its figure is returned."""
    fig = Figure()
    ax = fig.add_subplot()
    assert timeline(inventory, ax=ax) is fig
    assert len(_bars(fig)) == len(_certificates(inventory))


def test_inventory_method_delegates(inventory: kubepki.Inventory, tmp_path: Path) -> None:
    """Inventory.timeline() is the same picture, saved when asked."""
    fig = inventory.timeline(path=tmp_path / "t.png")
    assert isinstance(fig, Figure)
    assert (tmp_path / "t.png").stat().st_size > 0


def test_missing_matplotlib_is_a_config_error(inventory: kubepki.Inventory, monkeypatch: Any) -> None:
    """Without matplotlib the error names the extra to install."""
    monkeypatch.setitem(sys.modules, "matplotlib.dates", None)
    with pytest.raises(ConfigError, match=r"pip install 'kubepki\[notebook\]'"):
        timeline(inventory)


def test_empty_input_is_a_config_error() -> None:
    """An empty list of inventories is refused with a clear message."""
    with pytest.raises(ConfigError, match="non-empty"):
        timeline([])


def test_importing_does_not_import_matplotlib() -> None:
    """kubepki.inspection.timeline imports matplotlib only when a picture is drawn."""
    code = ("import sys, kubepki.inspection.timeline, kubepki.inspection.frames\n"
            "print('matplotlib' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
