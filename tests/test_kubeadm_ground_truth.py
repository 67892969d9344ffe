"""kubepki against trees written by a real kubeadm, and kubeadm's own check-expiration output."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

import kubepki
from kubepki.catalog import Kind
from kubepki.inspection._render import inventory_table
from tests.kubeadm_trees import FIXTURES, PKI_SCENARIOS, config_path, materialize

UTC = dt.timezone.utc
_ROW = re.compile(
    r"^(?P<name>\S+)\s+(?P<date>[A-Z][a-z]{2} \d{2}, \d{4} \d{2}:\d{2} UTC)\s+(?P<residual>\S+)\s+"
    r"(?:(?P<ca>[a-z-]+)\s+)?(?P<ext>yes|no)\s*$"
)


def _expiration_text(scenario: str) -> str | None:
    for name in ("check-expiration-after-renew.txt", "check-expiration.txt"):
        path = FIXTURES / scenario / "kubeadm" / name
        if path.exists():
            return path.read_text()
    return None


def _parse_tables(text: str) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """kubeadm's two text tables -> {name: {date, residual, ca, ext}}."""
    certs: dict[str, dict[str, str]] = {}
    cas: dict[str, dict[str, str]] = {}
    target = certs
    for line in text.splitlines():
        if line.startswith("CERTIFICATE AUTHORITY"):
            target = cas
            continue
        m = _ROW.match(line)
        if m:
            target[m["name"]] = {k: v for k, v in m.groupdict().items() if v is not None}
    return certs, cas


SCENARIOS_WITH_OUTPUT = [s for s in PKI_SCENARIOS if _expiration_text(s) is not None]
SCENARIOS_WITH_JSON = [
    s for s in PKI_SCENARIOS if (FIXTURES / s / "kubeadm" / "check-expiration-json.txt").exists()
]


def _json(scenario: str) -> dict[str, object]:
    text = (FIXTURES / scenario / "kubeadm" / "check-expiration-json.txt").read_text()
    return json.loads(text[: text.rindex("}") + 1])  # type: ignore[no-any-return]


def _kubeadm_now(scenario: str) -> dt.datetime:
    """The moment kubeadm ran check-expiration: expirationDate minus residualTime."""
    first = _json(scenario)["certificates"][0]  # type: ignore[index]
    when = dt.datetime.fromisoformat(first["expirationDate"].replace("Z", "+00:00"))
    return when - dt.timedelta(seconds=first["residualTime"])


def _inventory(scenario: str, tmp_path: Path, now: dt.datetime) -> kubepki.Inventory:
    root = materialize(scenario, tmp_path / scenario)
    return kubepki.inspect(kubepki.Node(root, config=config_path(scenario)), now=now)


def _leaf_issue_time(tmp_path: Path, scenario: str) -> dt.datetime:
    root = materialize(scenario, tmp_path / f"{scenario}-probe")
    cert = kubepki.pki._certs.load_certificate((root / "etc/kubernetes/pki/apiserver.crt").read_bytes())
    return cert.not_valid_before_utc + dt.timedelta(minutes=5, seconds=30)


@pytest.mark.parametrize("scenario", SCENARIOS_WITH_OUTPUT)
def test_every_kubeadm_row_is_found_with_same_expiry_and_ca(scenario: str, tmp_path: Path) -> None:
    """Every row kubeadm lists is an inventory item with the same expiry, CA and external flag."""
    text = _expiration_text(scenario)
    assert text is not None
    certs, cas = _parse_tables(text)
    assert certs and cas
    inv = _inventory(scenario, tmp_path, _leaf_issue_time(tmp_path, scenario))
    for name, row in {**certs, **cas}.items():
        item = inv[name]
        assert item.not_after is not None, name
        assert item.not_after.strftime("%b %d, %Y %H:%M UTC") == row["date"], name
        assert item.externally_managed == (row["ext"] == "yes"), name
        if "ca" in row:
            assert item.signer == row["ca"], name
    listed = {i.name for i in inv if i.kind in (Kind.CA,) or i.entry.renewable}
    assert listed == set(certs) | set(cas)


@pytest.mark.parametrize("scenario", SCENARIOS_WITH_JSON)
def test_expiry_matches_kubeadm_json_to_the_second(scenario: str, tmp_path: Path) -> None:
    """NotAfter and residual seconds equal kubeadm's structured output."""
    data = _json(scenario)
    now = _kubeadm_now(scenario)
    inv = _inventory(scenario, tmp_path, now)
    for row in [*data["certificates"], *data["certificateAuthorities"]]:  # type: ignore[misc]
        item = inv[row["name"]]
        assert item.to_dict()["not_after"] == row["expirationDate"]
        assert item.externally_managed == row["externallyManaged"]
        assert (item.status is kubepki.Status.MISSING) == row["missing"]
        if "caName" in row:
            assert item.signer == row["caName"]
        if row["residualTime"] > 0:
            # kubeadm's clock had sub-second precision; ours is derived from its first row.
            assert item.residual_seconds is not None
            assert abs(item.residual_seconds - row["residualTime"]) <= 1


@pytest.mark.parametrize("scenario", SCENARIOS_WITH_JSON)
def test_table_is_byte_identical_to_kubeadm(scenario: str, tmp_path: Path) -> None:
    """The two tables are exactly what kubeadm printed (same columns, widths, dates, residuals)."""
    now = _kubeadm_now(scenario)
    inv = _inventory(scenario, tmp_path, now)
    kubeadm = (FIXTURES / scenario / "kubeadm" / "check-expiration.txt").read_text()
    kubeadm = kubeadm.split("[exit code")[0]
    ours = inventory_table(inv, findings=False)
    # kubepki lists kubelet.conf too (kubeadm leaves it to the kubelet): drop that row.
    ours = "\n".join(line for line in ours.splitlines() if not line.startswith("kubelet")) + "\n"
    assert ours == kubeadm


@pytest.mark.parametrize("scenario", PKI_SCENARIOS)
def test_real_trees_have_no_errors(scenario: str, tmp_path: Path) -> None:
    """Real kubeadm trees have no error findings (right after issue, or only expiry for `expired`)."""
    now = _leaf_issue_time(tmp_path, scenario)
    if scenario == "expired":
        now += dt.timedelta(minutes=5)  # its leaves were valid for one minute
    inv = _inventory(scenario, tmp_path, now)
    errors = {(item.name, f.code) for item, f in inv.findings if f.severity.rank >= kubepki.Severity.ERROR.rank}
    if scenario == "expired":
        assert errors and {code for _, code in errors} == {"expired"}
    elif scenario == "expired-renewed":
        # `kubeadm certs renew all` leaves kubelet.conf alone (kubernetes/kubeadm#2054): still expired.
        assert errors == {("kubelet.conf", "expired")}
    else:
        assert errors == set()


@pytest.mark.parametrize("scenario", ["single", "ha-cp1", "ha-cp2"])
def test_real_tree_item_facts(scenario: str, tmp_path: Path) -> None:
    """Facts are parsed as kubeadm wrote them (subjects, SANs, usages, keys, modes)."""
    inv = _inventory(scenario, tmp_path, _leaf_issue_time(tmp_path, scenario))
    node = inv.node
    api = inv["apiserver"].facts
    assert api is not None
    assert api.common_name == "kube-apiserver"
    assert node in api.dns_names and "kubernetes.default.svc.cluster.local" in api.dns_names
    assert "10.96.0.1" in api.ip_addresses
    assert api.extended_key_usages == ("serverAuth",)
    assert api.key_algorithm == "RSA-2048"
    assert inv["etcd-server"].facts.common_name == node  # type: ignore[union-attr]
    assert inv["admin.conf"].facts.organizations == ("kubeadm:cluster-admins",)  # type: ignore[union-attr]
    assert inv["super-admin.conf"].facts.organizations == ("system:masters",)  # type: ignore[union-attr]
    assert inv["sa"].key_algorithm == "RSA-2048"
    key_file = next(f for f in inv["apiserver"].files if f.role == "key")
    assert key_file.mode == 0o600
    assert inv["ca"].files[0].mode == 0o644


def test_node_discovery_from_real_manifests(tmp_path: Path) -> None:
    """single-full's manifests give the version, name, cert dir and SAN values."""
    root = materialize("single-full", tmp_path / "n")
    profile = kubepki.Node(root).profile
    assert str(profile.kubernetes_version) == "1.34"
    assert profile.version_source == "kube-apiserver image tag"
    assert profile.name == "cp1"
    assert str(profile.cert_dir) == "/etc/kubernetes/pki"
    assert profile.san_values()["service_vip"] == "10.96.0.1"
    assert profile.san_values()["advertise_address"] == "10.0.0.11"
    assert not profile.external_etcd


def test_kubelet_client_symlink_is_followed_inside_the_root(tmp_path: Path) -> None:
    """The absolute symlink kubelet-client-current.pem resolves under the root, not on the host."""
    inv = _inventory("single-full", tmp_path, dt.datetime(2026, 12, 1, tzinfo=UTC))
    item = inv["kubelet-client-current.pem"]
    assert item.status is kubepki.Status.OK
    assert item.files[0].link_target is not None
    assert item.files[0].link_target.startswith("/var/lib/kubelet/pki/kubelet-client-2026")
    kubelet_conf = inv["kubelet.conf"]
    assert kubelet_conf.status is kubepki.Status.OK
    assert not kubelet_conf.has("kubelet-client-embedded")


def test_ha_shared_files_identical_node_files_distinct(tmp_path: Path) -> None:
    """Across ha-cp1..3, CAs and sa are identical and every node-scoped item differs."""
    invs = [_inventory(s, tmp_path, dt.datetime(2026, 12, 1, tzinfo=UTC)) for s in ("ha-cp1", "ha-cp2", "ha-cp3")]
    assert [i.node for i in invs] == ["cp1", "cp2", "cp3"]
    comparison = kubepki.compare_nodes(invs)
    for name, row in comparison.items():
        if row["scope"] == "shared":
            assert row["identical"], name
        elif len(row["digests"]) > 1 and all(i[name].status is not kubepki.Status.MISSING for i in invs):
            assert len(set(row["digests"].values())) == len(invs), name
    serials = {inv.node: inv["apiserver"].facts.serial for inv in invs}  # type: ignore[union-attr]
    assert len(set(serials.values())) == 3


@pytest.mark.parametrize("base", ["single", "ha-cp1", "ha-cp2", "ha-cp3"])
def test_renewed_trees_keep_attributes_and_change_serials(base: str, tmp_path: Path) -> None:
    """kubeadm's renewed trees: same subjects and SANs, new serials and keys for renewable items."""
    now = dt.datetime(2026, 12, 1, tzinfo=UTC)
    before = _inventory(base, tmp_path, now)
    after = _inventory(f"{base}-renewed", tmp_path, now)
    for item in before:
        new = after[item.name]
        if item.facts is None:
            continue
        assert new.facts is not None
        assert (new.facts.subject, new.facts.dns_names, new.facts.ip_addresses) == (
            item.facts.subject, item.facts.dns_names, item.facts.ip_addresses)
        renewed = item.entry.renewable
        assert (new.facts.serial != item.facts.serial) == renewed, item.name
