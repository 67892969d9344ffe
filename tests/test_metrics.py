"""Prometheus metrics: parseable exposition, atomic textfile, a real scrape endpoint."""

from __future__ import annotations

import datetime as dt
import threading
import urllib.request
from pathlib import Path

import pytest

import kubepki
from kubepki.cli import main
from tests.kubeadm_trees import materialize

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


def _samples(text: str) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, []).extend(family.samples)
    return out


def test_exposition_parses_and_has_the_documented_series(tmp_path: Path) -> None:
    """Every documented family is present with node/name/path/signer/kind labels."""
    from kubepki import metrics

    inv = kubepki.inspect(materialize("expired", tmp_path / "n"), now=NOW)
    samples = _samples(metrics.exposition([inv]))
    for name in ("kubepki_certificate_expiry_timestamp_seconds", "kubepki_certificate_seconds_left",
                 "kubepki_certificate_valid", "kubepki_item_status", "kubepki_item_error", "kubepki_findings",
                 "kubepki_inspection_timestamp_seconds", "kubepki_inspection_exit_code"):
        assert name in samples, name
    left = {s.labels["name"]: s for s in samples["kubepki_certificate_seconds_left"]}  # type: ignore[attr-defined]
    api = left["apiserver"]
    assert api.labels["node"] == "cp1"
    assert api.labels["path"] == "/etc/kubernetes/pki/apiserver.crt"
    assert (api.labels["signer"], api.labels["kind"]) == ("ca", "certificate")
    assert api.value < 0  # expired
    errors = {s.labels["name"]: s.value for s in samples["kubepki_item_error"]}  # type: ignore[attr-defined]
    assert errors["apiserver"] == 1
    assert errors["ca"] == 0
    status = [s for s in samples["kubepki_item_status"]  # type: ignore[attr-defined]
              if s.labels["name"] == "apiserver" and s.value == 1]
    assert [s.labels["status"] for s in status] == ["expired"]
    assert samples["kubepki_inspection_exit_code"][0].value == 2  # type: ignore[attr-defined]


def test_textfile_is_written_atomically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki metrics --textfile` leaves one complete file, no temporaries."""
    root = materialize("single-full", tmp_path / "n")
    out = tmp_path / "textfile"
    out.mkdir()
    assert main(["metrics", "--root", str(root), "--textfile", str(out / "kubepki.prom")]) == 0
    assert [p.name for p in out.iterdir()] == ["kubepki.prom"]
    assert "kubepki_certificate_expiry_timestamp_seconds" in (out / "kubepki.prom").read_text()
    assert main(["metrics", "--root", str(root), "--textfile", str(tmp_path / "nope" / "x.prom")]) == 3
    assert "not a directory" in capsys.readouterr().err


def test_scrape_endpoint_serves_fresh_inventories(tmp_path: Path) -> None:
    """A real HTTP scrape on 127.0.0.1 returns parseable metrics; the server stops on request."""
    from kubepki import metrics

    root = materialize("single-full", tmp_path / "n")
    stop = threading.Event()
    host, port = metrics.serve("127.0.0.1:0", lambda: [kubepki.inspect(root, now=NOW)], stop=stop)
    try:
        body = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10).read().decode()
    finally:
        stop.set()
    assert "kubepki_certificate_valid" in _samples(body)


def test_cluster_object_items_are_exported_with_their_object_labels() -> None:
    """Secrets and ConfigMaps with the same key name stay distinct series (object_kind label)."""
    import json

    from kubepki import metrics
    from tests.kubeadm_trees import FIXTURES

    ca = (FIXTURES / "single/root/etc/kubernetes/pki/ca.crt").read_text()
    import base64

    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "root", "namespace": "ns"},
         "data": {"ca.crt": ca}},
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "root", "namespace": "ns"},
         "data": {"ca.crt": base64.b64encode(ca.encode()).decode()}},
    ]}
    inv = kubepki.check_objects(json.dumps(doc).encode(), now=NOW)
    samples = _samples(metrics.exposition([inv]))
    kinds = sorted(s.labels["object_kind"] for s in samples["kubepki_certificate_seconds_left"])  # type: ignore[attr-defined]
    assert kinds == ["ConfigMap", "Secret"]


def test_cli_metrics_includes_cluster_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki metrics --objects FILE` exports node items and the objects' certificates together."""
    import json

    from tests.kubeadm_trees import FIXTURES

    ca = (FIXTURES / "single/root/etc/kubernetes/pki/ca.crt").read_text()
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "kube-root-ca.crt", "namespace": "default"},
                                   "data": {"ca.crt": ca}}))
    root = materialize("single-full", tmp_path / "n")
    assert main(["metrics", "--root", str(root), "--objects", str(objects)]) == 0
    samples = _samples(capsys.readouterr().out)
    names = {s.labels["name"] for s in samples["kubepki_certificate_expiry_timestamp_seconds"]}  # type: ignore[attr-defined]
    assert "apiserver" in names
    assert "default/kube-root-ca.crt/ca.crt" in names
