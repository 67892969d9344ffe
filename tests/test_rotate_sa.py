"""Rotating the service-account key pair (``kubepki cluster rotate-ca --sa --no-restart``), phase by phase.

After every phase, on a 3 control plane + 2 worker ``kubepki.testing`` cluster and on kubeadm's own HA
trees: a token signed by any control plane's sa.key verifies with every control plane's sa.pub (as each
kube-apiserver would verify it), the old key's tokens verify until drop-old and not after, the new key's
from trust-both on and not before; only the plan's paths changed (modes and owners kept). Abort returns
byte for byte; a SIGKILL at a checkpoint resumes to the same end; drop-old waits for the longest token
lifetime the kube-apiservers' flags allow.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from hypothesis import HealthCheck, given, settings, strategies as st

from kubepki import testing
from kubepki.cli import main
from kubepki.cluster import (
    PHASES,
    Cluster,
    Phase,
    SARotationPlan,
    abort_sa_rotation,
    apply_sa_rotation,
    plan_sa_rotation,
    sa_rotation_status,
)
from kubepki.errors import ConfigError, LockError
from kubepki.node import Node, node_lock
from tests._hardening import snapshot
from tests.rotation_trees import (
    BACKUPS,
    CPS,
    PKI,
    changed,
    cluster,
    copy_cluster,
    ha_trees,
    trees,
)

REPO = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc)
STATE = f"{PKI}/.kubepki-rotation-sa.json"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> testing.DemoCluster:
    return testing.build_cluster(tmp_path_factory.mktemp("rotsa"), nodes=3, workers=2)


@pytest.fixture
def roots(pristine: testing.DemoCluster, tmp_path: Path) -> dict[str, Path]:
    """A private copy of the 3 + 2 cluster: node name -> root."""
    return copy_cluster(pristine, tmp_path)


@pytest.fixture
def ha_roots(tmp_path: Path) -> dict[str, Path]:
    return ha_trees(tmp_path)




# -- tokens, signed and verified as kube-apiserver does (RS256 / ES256 JWS) -----------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_token(key_pem: bytes, subject: str = "system:serviceaccount:default:default") -> str:
    key = serialization.load_pem_private_key(key_pem, None)
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"iss": "https://kubernetes.default.svc.cluster.local", "sub": subject}).encode())
    signing_input = f"{header}.{claims}".encode()
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{header}.{claims}.{_b64(sig)}"


def public_keys(pem: bytes) -> list[Any]:
    out = []
    for chunk in pem.split(b"-----END PUBLIC KEY-----")[:-1]:
        out.append(serialization.load_pem_public_key(chunk + b"-----END PUBLIC KEY-----\n"))
    return out


def verifies(token: str, sa_pub: bytes) -> bool:
    """True when one of the public keys of ``sa_pub`` verifies ``token`` (kube-apiserver tries each)."""
    head, claims, sig_b64 = token.split(".")
    sig = base64.urlsafe_b64decode(sig_b64 + "=" * (-len(sig_b64) % 4))
    for key in public_keys(sa_pub):
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(sig, f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
            else:
                der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
                key.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
            return True
        except (InvalidSignature, TypeError, ValueError):
            continue
    return False


def assert_tokens_verify_everywhere(roots: dict[str, Path]) -> None:
    """Every control plane's sa.key signs tokens every control plane's sa.pub verifies."""
    for signer in CPS_OF(roots):
        token = sign_token((roots[signer] / PKI / "sa.key").read_bytes())
        for verifier in CPS_OF(roots):
            assert verifies(token, (roots[verifier] / PKI / "sa.pub").read_bytes()), (signer, verifier)


def CPS_OF(roots: dict[str, Path]) -> list[str]:
    return [n for n in roots if n.startswith("cp")]


def apply_next(c: Cluster, **kw: Any) -> SARotationPlan:
    plan = plan_sa_rotation(c, now=NOW, **kw)
    result = apply_sa_rotation(plan, backup_dir=BACKUPS, now=NOW)
    assert result.ok, result.problems
    return plan


def run_phases(roots: dict[str, Path]) -> tuple[bytes, bytes]:
    """All four phases, checked after each; returns (old sa.key, new sa.key)."""
    c = cluster(roots)
    cps = CPS_OF(roots)
    old_key = (roots["cp1"] / PKI / "sa.key").read_bytes()
    old_pub = (roots["cp1"] / PKI / "sa.pub").read_bytes()
    assert sa_rotation_status(c).active is False and sa_rotation_status(c).next_phase is Phase.PREPARE
    new_key: bytes | None = None
    for phase in PHASES:
        before = trees(roots)
        plan = plan_sa_rotation(c, now=NOW, force=phase is Phase.DROP_OLD)
        assert plan.phase is phase
        assert trees(roots) == before  # planning writes nothing
        assert "PRIVATE KEY" not in plan.to_json()
        wanted = ("kube-apiserver", "kube-controller-manager") if phase is Phase.REISSUE else ("kube-apiserver",)
        assert plan.restarts == ({} if phase is Phase.PREPARE else dict.fromkeys(cps, wanted))
        result = apply_sa_rotation(plan, backup_dir=BACKUPS, now=NOW)
        assert result.ok, result.problems
        assert set(result.backups) == set(cps)
        after = trees(roots)
        for name in roots:
            assert changed(before, after)[name] <= plan.paths(name), name
            writes = {ch.path for ch in plan.changes if ch.node == name and ch.action != "record"}
            assert writes <= changed(before, after)[name], name
            for p, entry in after[name].items():  # an existing file kept its mode and owner
                if p in before[name] and entry != before[name][p]:
                    assert entry[1:4] == before[name][p][1:4], p
            if name not in cps:
                assert not changed(before, after)[name]  # a worker holds no sa key: untouched
        status = sa_rotation_status(c)
        assert status.phase is phase and status.applying is None and set(status.nodes) == set(cps)
        assert_tokens_verify_everywhere(roots)
        if phase is Phase.PREPARE:
            staged = roots["cp1"] / PKI / ".kubepki-rotation-sa-new.key"
            assert staged.stat().st_mode & 0o777 == 0o600
            new_key = staged.read_bytes()
            assert new_key != old_key
            for cp in cps:
                assert (roots[cp] / PKI / ".kubepki-rotation-sa-new.key").read_bytes() == new_key  # identical
                assert (roots[cp] / PKI / "sa.pub").read_bytes() == old_pub  # nothing in use changed
        assert new_key is not None
        check_keys(roots, phase, old_key, new_key)
    assert new_key is not None
    assert sa_rotation_status(c).next_phase is None
    with pytest.raises(ConfigError, match="complete"):
        plan_sa_rotation(c)
    for cp in cps:
        assert not list((roots[cp] / PKI).glob(".kubepki-rotation-sa-*"))  # staged copies and undo records gone
        key = serialization.load_pem_private_key(new_key, None)
        assert (roots[cp] / PKI / "sa.pub").read_bytes() == key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return old_key, new_key


def check_keys(roots: dict[str, Path], phase: Phase, old_key: bytes, new_key: bytes) -> None:
    """After ``phase``: what each control plane signs with, and whose tokens it verifies."""
    old_token, new_token = sign_token(old_key), sign_token(new_key)
    for cp in CPS_OF(roots):
        pub = (roots[cp] / PKI / "sa.pub").read_bytes()
        # the old key's tokens verify until drop-old; the new key's from trust-both on
        assert verifies(old_token, pub) is (phase is not Phase.DROP_OLD), (cp, phase)
        assert verifies(new_token, pub) is (phase is not Phase.PREPARE), (cp, phase)
        signing = (roots[cp] / PKI / "sa.key").read_bytes()
        assert signing == (old_key if phase in (Phase.PREPARE, Phase.TRUST_BOTH) else new_key), (cp, phase)
        assert len(public_keys(pub)) == {Phase.PREPARE: 1, Phase.DROP_OLD: 1}.get(phase, 2)


def test_four_phases_on_three_control_planes_and_two_workers(roots: dict[str, Path]) -> None:
    old_key, new_key = run_phases(roots)
    old = serialization.load_pem_private_key(old_key, None)
    new = serialization.load_pem_private_key(new_key, None)
    assert type(new) is type(old) and getattr(new, "key_size", None) == getattr(old, "key_size", None)
    for cp in CPS:  # the manifests still name kubeadm's files: nothing to point elsewhere
        api = (roots[cp] / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
        assert "--service-account-key-file=/etc/kubernetes/pki/sa.pub" in api


def test_four_phases_on_kubeadm_ha_trees(ha_roots: dict[str, Path]) -> None:
    """kubeadm's own trees (no manifests): the rotation runs and the plan says what it could not check."""
    c = cluster(ha_roots)
    notes = " ".join(plan_sa_rotation(c, now=NOW).notes)
    assert "cp2: no kube-apiserver manifest" in notes and "cp3: no kube-controller-manager manifest" in notes
    status = sa_rotation_status(c)
    assert all(not t.from_manifest for t in status.lifetimes)  # kube-apiserver's defaults assumed
    run_phases(ha_roots)


def test_an_ecdsa_key_is_rotated_to_an_ecdsa_key(tmp_path: Path) -> None:
    demo = testing.build_cluster(tmp_path / "ec", nodes=2, key_algorithm="ECDSA-P256", fresh_keys=True)
    roots = {n.name: n.root for n in demo.nodes}
    c = cluster(roots)
    old = serialization.load_pem_private_key((roots["cp1"] / PKI / "sa.key").read_bytes(), None)
    if not isinstance(old, ec.EllipticCurvePrivateKey):
        pytest.skip("kubepki.testing makes an RSA sa.key with this algorithm")
    apply_next(c)
    new = serialization.load_pem_private_key((roots["cp1"] / PKI / ".kubepki-rotation-sa-new.key").read_bytes(), None)
    assert isinstance(new, ec.EllipticCurvePrivateKey) and new.curve.name == old.curve.name


def test_a_staged_leftover_without_a_record_is_replaced(roots: dict[str, Path]) -> None:
    """A staged key with no record (left by hand, or another tool): prepare stages a fresh one everywhere;
    a prepare killed after its record (the control) keeps the key some control planes have already."""
    leftover = roots["cp2"] / PKI / ".kubepki-rotation-sa-new.key"
    leftover.write_bytes((roots["cp2"] / PKI / "sa.key").read_bytes())
    leftover.chmod(0o600)
    c = cluster(roots)
    plan = plan_sa_rotation(c)
    assert ("cp2", str("/" / Path(PKI) / leftover.name), "write") in {(ch.node, ch.path, ch.action)
                                                                      for ch in plan.changes}
    assert apply_sa_rotation(plan, backup_dir=BACKUPS).ok
    staged = {(roots[cp] / PKI / leftover.name).read_bytes() for cp in CPS}
    assert len(staged) == 1 and staged != {(roots["cp2"] / PKI / "sa.key").read_bytes()}
    for cp in ("cp1", "cp3"):  # a prepare resumed after its record: what is staged already is kept
        (roots[cp] / PKI / leftover.name).unlink()
    doc = json.loads((roots["cp1"] / STATE).read_text())
    for cp in CPS:
        (roots[cp] / STATE).write_text(json.dumps({**doc, "phase": None, "applying": "prepare"}))
    assert apply_sa_rotation(plan_sa_rotation(c), backup_dir=BACKUPS).ok
    assert {(roots[cp] / PKI / leftover.name).read_bytes() for cp in CPS} == staged
    for cp in CPS:  # staged copies replaced by the key in use: trust-both would rotate nothing
        (roots[cp] / PKI / leftover.name).write_bytes((roots[cp] / PKI / "sa.key").read_bytes())
    with pytest.raises(ConfigError, match="the key in use"):
        plan_sa_rotation(c)


def test_keys_an_operator_added_to_sa_pub_are_kept(roots: dict[str, Path]) -> None:
    extra = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    extra_pem = extra.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    for cp in CPS:
        pub = roots[cp] / PKI / "sa.pub"
        pub.write_bytes(pub.read_bytes() + extra_pem)
    c = cluster(roots)
    for _ in range(3):
        apply_next(c)
    apply_next(c, force=True)
    for cp in CPS:
        pub = (roots[cp] / PKI / "sa.pub").read_bytes()
        assert extra_pem in pub and len(public_keys(pub)) == 2  # the new key and the operator's


# -- abort ------------------------------------------------------------------------------------------


def test_abort_returns_every_byte_phase_by_phase(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    with pytest.raises(ConfigError, match="nothing to abort"):
        abort_sa_rotation(c)
    snapshots = [trees(roots)]
    old_token = sign_token((roots["cp1"] / PKI / "sa.key").read_bytes())
    for _ in range(3):
        apply_next(c)
        snapshots.append(trees(roots))
    for phase, previous in ((Phase.REISSUE, snapshots[2]), (Phase.TRUST_BOTH, snapshots[1])):
        result = abort_sa_rotation(c, now=NOW)
        assert result.ok and result.phase is phase, result.problems
        # every file as it was, but the record, whose history says "aborted"
        assert changed(previous, trees(roots)) == {n: {"/" + STATE} if n in CPS else set() for n in roots}
        assert sa_rotation_status(c).history[-1]["event"] == "aborted"
        assert_tokens_verify_everywhere(roots)
        assert verifies(old_token, (roots["cp2"] / PKI / "sa.pub").read_bytes())
    assert sa_rotation_status(c).phase is Phase.PREPARE
    assert abort_sa_rotation(c).phase is Phase.PREPARE
    assert trees(roots) == snapshots[0]  # byte for byte, modes and owners too
    assert sa_rotation_status(c).active is False
    for _ in range(3):  # and it starts again from scratch
        apply_next(c)
    assert sa_rotation_status(c).reissued_at == NOW


def test_abort_refused_once_drop_old_starts(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    for _ in range(3):
        apply_next(c)
    apply_next(c, force=True)
    with pytest.raises(ConfigError, match="drop-old"):
        abort_sa_rotation(c)


# -- drop-old's wait --------------------------------------------------------------------------------


def set_flags(roots: dict[str, Path], **flags: str) -> None:
    for cp in CPS:
        manifest = roots[cp] / "etc/kubernetes/manifests/kube-apiserver.yaml"
        text = manifest.read_text()
        anchor = "    - --service-account-issuer="
        extra = "".join(f"    - --{k.replace('_', '-')}={v}\n" for k, v in flags.items())
        manifest.write_text(text.replace(anchor, extra + anchor, 1))


@pytest.mark.parametrize(("flags", "lifetime"), [
    ({}, dt.timedelta(seconds=1 << 32)),  # kubeadm's default: a TokenRequest may ask up to 2^32 s
    ({"service_account_max_token_expiration": "2h"}, dt.timedelta(days=365)),  # extended tokens: 1 year
    ({"service_account_max_token_expiration": "2h", "service_account_extend_token_expiration": "false"},
     dt.timedelta(hours=2)),
    ({"service_account_max_token_expiration": "3600s"}, dt.timedelta(hours=1)),  # 3607 s capped: no extension
    ({"service_account_max_token_expiration": "8760h", "service_account_extend_token_expiration": "true"},
     dt.timedelta(days=365)),
])
def test_token_lifetime_from_the_apiserver_flags(roots: dict[str, Path], flags: dict[str, str],
                                                 lifetime: dt.timedelta) -> None:
    set_flags(roots, **flags)
    status = sa_rotation_status(cluster(roots))
    assert status.token_lifetime == lifetime
    assert {t.node for t in status.lifetimes} == set(CPS) and all(t.from_manifest for t in status.lifetimes)


def test_drop_old_waits_for_the_longest_token_lifetime(roots: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    set_flags(roots, service_account_max_token_expiration="2h", service_account_extend_token_expiration="false")
    c = cluster(roots)
    for _ in range(3):
        apply_next(c)
    status = sa_rotation_status(c)
    after = NOW + dt.timedelta(hours=2, minutes=1)  # the lifetime + the validator's minute of leeway
    assert status.reissued_at == NOW and status.drop_old_after == after
    assert any(after.isoformat() in n for n in status.notes)
    assert any("legacy Secret-based tokens" in n and "never expire" in n for n in status.notes)
    assert status.to_dict()["drop_old_after"] == after.isoformat()
    before = trees(roots)
    with pytest.raises(ConfigError, match=re.escape(f"refused until {after.isoformat()}")):
        plan_sa_rotation(c, now=after - dt.timedelta(seconds=1))
    assert trees(roots) == before
    forced = plan_sa_rotation(c, now=after - dt.timedelta(minutes=30), force=True)
    assert forced.forced and any(n.startswith("forced: drop-old 0h30m0s before") for n in forced.notes)
    waited = plan_sa_rotation(c, now=after)  # positive control: at the time, no force needed
    assert waited.phase is Phase.DROP_OLD and not waited.forced
    assert not any(n.startswith("forced") for n in waited.notes)
    assert any("legacy Secret-based tokens" in n for n in waited.notes)  # the plan says so too
    # a max lowered since reissue does not shorten the old key's last tokens: the recorded lifetime holds
    manifests = [roots[cp] / "etc/kubernetes/manifests/kube-apiserver.yaml" for cp in CPS]
    for m in manifests:
        m.write_text(m.read_text().replace("max-token-expiration=2h", "max-token-expiration=1h"))
    status = sa_rotation_status(c)
    assert status.reissue_lifetime == dt.timedelta(hours=2) and status.drop_old_after == after
    with pytest.raises(ConfigError, match="the kube-apiservers' flags when reissue was verified"):
        plan_sa_rotation(c, now=after - dt.timedelta(minutes=1))
    # a longer max on one control plane only: the longest decides
    manifest = manifests[2]
    manifest.write_text(manifest.read_text().replace("max-token-expiration=1h", "max-token-expiration=5h"))
    assert sa_rotation_status(c).drop_old_after == NOW + dt.timedelta(hours=5, minutes=1)
    with pytest.raises(ConfigError, match="cp3: --service-account-max-token-expiration=5h0m0s"):
        plan_sa_rotation(c, now=after)
    assert apply_sa_rotation(plan_sa_rotation(c, now=after, force=True), backup_dir=BACKUPS, now=after).ok
    assert sa_rotation_status(c).history[-2].get("forced") is True


# -- refusals: out of order, moved files, locks, not kubeadm's layout ----------------------------------


def test_a_plan_out_of_order_or_whose_files_moved_is_refused(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    stale = plan_sa_rotation(c, now=NOW)
    assert apply_sa_rotation(stale, backup_dir=BACKUPS).ok
    with pytest.raises(ConfigError, match="plan again"):
        apply_sa_rotation(stale, backup_dir=BACKUPS)
    plan = plan_sa_rotation(c, now=NOW)
    pub = roots["cp2"] / PKI / "sa.pub"
    original = pub.read_bytes()
    pub.write_bytes(original + b"\n")
    before = trees(roots)
    with pytest.raises(ConfigError, match=r"cp2:/etc/kubernetes/pki/sa.pub changed since the plan"):
        apply_sa_rotation(plan, backup_dir=BACKUPS)
    assert trees(roots) == before
    pub.write_bytes(original)
    assert apply_sa_rotation(plan, backup_dir=BACKUPS).ok  # positive control: as planned, it applies


def test_a_node_locked_by_another_run_stops_the_phase_before_any_write(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    plan = plan_sa_rotation(c)
    before = {n: set(snapshot(r)) for n, r in roots.items()}
    with node_lock(Node(roots["cp3"])), pytest.raises(LockError):
        apply_sa_rotation(plan, backup_dir=BACKUPS)
    assert {n: set(snapshot(r)) for n, r in roots.items()} == before  # not even a backup
    assert apply_sa_rotation(plan, backup_dir=BACKUPS).ok


def test_components_reading_other_files_are_not_kubepkis_to_rotate(roots: dict[str, Path]) -> None:
    manifest = roots["cp2"] / "etc/kubernetes/manifests/kube-controller-manager.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("--service-account-private-key-file=/etc/kubernetes/pki/sa.key",
                                     "--service-account-private-key-file=/etc/kubernetes/pki/other.key"))
    with pytest.raises(ConfigError, match=r"cp2:.*--service-account-private-key-file is \['/etc/kubernetes/pki/"
                                          r"other.key'\], not /etc/kubernetes/pki/sa.key"):
        plan_sa_rotation(cluster(roots))
    manifest.write_text(text)
    # a repeated --service-account-key-file naming sa.pub among others is kubeadm's file still
    api = roots["cp1"] / "etc/kubernetes/manifests/kube-apiserver.yaml"
    api.write_text(api.read_text().replace("    - --service-account-key-file=/etc/kubernetes/pki/sa.pub\n",
                                           "    - --service-account-key-file=/etc/kubernetes/pki/extra.pub\n"
                                           "    - --service-account-key-file=/etc/kubernetes/pki/sa.pub\n"))
    assert plan_sa_rotation(cluster(roots)).phase is Phase.PREPARE


def test_control_planes_with_different_keys_are_refused(roots: dict[str, Path], tmp_path: Path) -> None:
    other = testing.build_cluster(tmp_path / "other", nodes=1, fresh_keys=True)
    for name in ("sa.key", "sa.pub"):
        shutil.copy2(other.first.root / PKI / name, roots["cp3"] / PKI / name)
    with pytest.raises(ConfigError, match=r"sa\.key differs between the control planes"):
        plan_sa_rotation(cluster(roots))
    shutil.copy2(other.first.root / PKI / "sa.pub", roots["cp2"] / PKI / "sa.pub")
    shutil.copy2(roots["cp1"] / PKI / "sa.key", roots["cp3"] / PKI / "sa.key")
    with pytest.raises(ConfigError, match=r"cp2:.*sa.pub does not hold sa.key's public key"):
        plan_sa_rotation(cluster(roots))
    with pytest.raises(ConfigError, match="control-plane nodes"):
        plan_sa_rotation(Cluster([roots["w1"]], labels=["w1"]))


def test_a_phase_that_left_a_control_plane_unable_to_verify_is_not_verified(roots: dict[str, Path]) -> None:
    """Negative control of the verification: trust-both applied, then cp2's sa.pub put back to the old key
    alone (an operator's restore) before reissue: reissue's check names the tokens cp2 cannot verify."""
    c = cluster(roots)
    old_pub = (roots["cp2"] / PKI / "sa.pub").read_bytes()
    for _ in range(2):
        apply_next(c)
    (roots["cp2"] / PKI / "sa.pub").write_bytes(old_pub)
    plan = plan_sa_rotation(c, now=NOW)  # planned from the restored file: it writes new + old again...
    result = apply_sa_rotation(attrs_without(plan, "cp2", f"/{PKI}/sa.pub"), backup_dir=BACKUPS, now=NOW)
    assert not result.ok
    assert any("sa.key signs tokens cp2's sa.pub does not verify" in p for p in result.problems)
    status = sa_rotation_status(c)
    assert status.applying is Phase.REISSUE and status.phase is Phase.TRUST_BOTH and status.reissued_at is None
    assert abort_sa_rotation(c).ok  # the unverified phase is what abort undoes
    assert_tokens_verify_everywhere(roots)


def attrs_without(plan: SARotationPlan, node: str, path: str) -> SARotationPlan:
    """``plan`` without one of its writes (...but a faulty writer skipped it)."""
    import attrs

    return attrs.evolve(plan, changes=tuple(c for c in plan.changes if (c.node, c.path) != (node, path)))


# -- damaged records: a typed error, never a traceback, and nothing written ---------------------------


def _values() -> st.SearchStrategy[object]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                        st.sampled_from([p.value for p in PHASES]), st.just(NOW.isoformat()))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200), st.dictionaries(
    st.sampled_from(["phase", "applying", "old_pub_pem", "old_sha256", "new_sha256", "history", "reissued_at",
                     "reissue_lifetime_seconds"]),
    _values(), max_size=7).map(lambda d: json.dumps({"kind": "SARotationState", **d}).encode())))
def test_a_damaged_record_is_a_config_error(roots: dict[str, Path], data: bytes) -> None:
    (roots["cp2"] / STATE).write_bytes(data)
    before = trees(roots)
    c = cluster(roots)
    for call in (lambda: sa_rotation_status(c), lambda: plan_sa_rotation(c), lambda: abort_sa_rotation(c)):
        with contextlib.suppress(ConfigError):  # a ConfigError, or a status: never another exception
            call()
    assert trees(roots) == before


def test_drop_old_without_reissues_time_needs_force(roots: dict[str, Path]) -> None:
    """Records that do not say when reissue was verified (written by hand, or by an older kubepki): the
    wait cannot be counted, so drop-old needs --force; with the time recorded it is counted (control)."""
    c = cluster(roots)
    for _ in range(3):
        apply_next(c)
    later = NOW + dt.timedelta(seconds=(1 << 32) + 120)
    assert plan_sa_rotation(c, now=later).phase is Phase.DROP_OLD  # positive control: the wait is over
    for cp in CPS:
        doc = json.loads((roots[cp] / STATE).read_text())
        del doc["reissued_at"]
        (roots[cp] / STATE).write_text(json.dumps(doc))
    assert sa_rotation_status(c).drop_old_after is None
    with pytest.raises(ConfigError, match="do not say when reissue was verified"):
        plan_sa_rotation(c, now=later)
    assert plan_sa_rotation(c, now=later, force=True).forced


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.builds(
    lambda head, body: b"-----BEGIN " + head + b"-----\n" + body + b"\n-----END " + head + b"-----\n",
    st.sampled_from([b"PUBLIC KEY", b"RSA PUBLIC KEY", b"CERTIFICATE"]), st.binary(max_size=120)
    .map(base64.b64encode))))
def test_untrusted_sa_pub_bytes_are_a_typed_error(roots: dict[str, Path], data: bytes) -> None:
    """Whatever sa.pub holds, status, plan and a phase's verification give a finding or a KubepkiError."""
    from kubepki.errors import KubepkiError

    (roots["cp2"] / PKI / "sa.pub").write_bytes(data)
    before = trees(roots)
    c = cluster(roots)
    for call in (lambda: sa_rotation_status(c), lambda: plan_sa_rotation(c)):
        with contextlib.suppress(KubepkiError):
            call()
    assert trees(roots) == before


def test_a_fifo_in_place_of_sa_pub_is_never_opened(roots: dict[str, Path]) -> None:
    """A FIFO (opening it would block) where sa.pub or the record is: a ConfigError naming it, no hang."""
    c = cluster(roots)
    assert plan_sa_rotation(c).phase is Phase.PREPARE  # positive control: the regular file plans
    pub = roots["cp3"] / PKI / "sa.pub"
    pub.unlink()
    os.mkfifo(pub)
    with pytest.raises(ConfigError, match=r"cp3:/etc/kubernetes/pki/sa.pub is not a regular file"):
        plan_sa_rotation(c)
    os.mkfifo(roots["cp1"] / STATE)
    with pytest.raises(ConfigError, match=r"cp1:.*\.kubepki-rotation-sa\.json is not a regular file"):
        sa_rotation_status(c)


def test_a_damaged_record_names_what_is_damaged(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    for _ in range(3):
        apply_next(c)
    assert sa_rotation_status(c).reissued_at == NOW  # positive control: the record as written reads back
    state = roots["cp2"] / STATE
    doc = json.loads(state.read_text())
    state.write_text(json.dumps({**doc, "phase": ["reissue"], "reissued_at": "yesterday",
                                 "old_pub_pem": "-----BEGIN PUBLIC KEY-----"}))
    with pytest.raises(ConfigError, match=r"cp2:.*damaged rotation record \(phase, reissued_at, old_pub_pem\)"):
        sa_rotation_status(c)
    state.write_text(json.dumps({**doc, "old_sha256": "0" * 64}))
    with pytest.raises(ConfigError, match=r"damaged rotation record \(old_sha256\)"):
        sa_rotation_status(c)


def test_a_damaged_undo_record_is_refused_before_any_write(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    for _ in range(2):
        apply_next(c)
    undo = roots["cp3"] / PKI / ".kubepki-rotation-sa-undo-trust-both.json"
    doc = json.loads(undo.read_text())
    doc["files"][0]["before"] = "not base64!"
    undo.write_text(json.dumps(doc))
    before = trees(roots)
    with pytest.raises(ConfigError, match="damaged undo record"):
        abort_sa_rotation(c)
    assert trees(roots) == before  # cp1's undo was not replayed first
    for bad in ("{", json.dumps({**doc, "files": {"a": 1}}), json.dumps({**doc, "phase": "prepare"})):
        undo.write_text(bad)
        with pytest.raises(ConfigError, match="damaged undo record"):
            abort_sa_rotation(c)


# -- the CLI -----------------------------------------------------------------------------------------


def cli(roots: dict[str, Path], action: str, *extra: str) -> list[str]:
    args = ["cluster", "rotate-ca", action, "--sa"]
    for name, root in roots.items():
        args += ["--worker" if name.startswith("w") else "--node", f"{name}={root}"]
    return [*args, *extra]


def test_cli(roots: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(cli(roots, "status", "-o", "json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "SARotationStatus" and doc["next"] == "prepare"
    assert doc["token_lifetime_seconds"] == 1 << 32
    assert main(cli(roots, "plan", "-o", "json")) == 0  # a plan restarts nothing: the same with --no-restart
    assert json.loads(capsys.readouterr().out)["phase"] == "prepare"
    assert main(cli(roots, "plan", "--no-restart", "-o", "json")) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["kind"] == "SARotationPlan" and plan["phase"] == "prepare" and plan["restarts"] == {}
    assert not list((roots["cp1"] / PKI).glob(".kubepki-rotation*"))  # plan, next without --apply: nothing
    for phase in PHASES:
        args = ("--force",) if phase is Phase.DROP_OLD else ()
        if phase is Phase.DROP_OLD:
            assert main(cli(roots, "next", "--no-restart", "--apply", "-o", "json")) == 3
            assert "drop-old is refused until" in capsys.readouterr().err
        assert main(cli(roots, "next", "--no-restart", "--apply", "-o", "json", *args)) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["kind"] == "SARotationResult" and doc["phase"] == phase.value and doc["outcome"] == "ok"
        assert set(doc["backups"]) == set(CPS)
        assert main(cli(roots, "status")) == 0
        out = capsys.readouterr().out
        assert "SERVICE-ACCOUNT KEY ROTATION" in out and phase.value in out
        if phase is Phase.REISSUE:
            assert "drop-old from" in out and "legacy Secret-based tokens" in out
            assert main(cli(roots, "abort")) == 0
            assert "would undo reissue (sa)" in capsys.readouterr().out
            assert main(cli(roots, "plan", "--no-restart", "-o", "json")) == 3
            assert "--force" in capsys.readouterr().err
            assert main(cli(roots, "plan", "--no-restart", "--force", "-o", "json")) == 0
            plan = json.loads(capsys.readouterr().out)
            assert plan["forced"] and plan["restarts"] == {cp: ["kube-apiserver"] for cp in CPS}
    assert main(cli(roots, "next", "--no-restart")) == 3
    assert "complete" in capsys.readouterr().err
    # the CA rotation is untouched by --sa: its own status says none is under way
    assert main(["cluster", "rotate-ca", "status", "-o", "json", "--node", f"cp1={roots['cp1']}"]) == 0
    assert json.loads(capsys.readouterr().out)["next"] == "prepare"


# -- crash: SIGKILL at checkpoints of a phase, then next --apply resumes ------------------------


def run_cli(roots: dict[str, Path], action: str, *extra: str, crash_at: int | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "KUBEPKI_TEST_CRASH_AT"}
    if crash_at is not None:
        env["KUBEPKI_TEST_CRASH_AT"] = str(crash_at)
    proc = subprocess.run([sys.executable, "-m", "kubepki", *cli(roots, action, *extra)],
                          check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode


#: Checkpoints of `next --apply`: each control plane's backup (3), each record (3), then each file in the
#: plan's order (prepare 6, trust-both 3, reissue 6, drop-old 3 + 6 staged + 9 undo records). Every one.
CHECKPOINTS = {Phase.PREPARE: 12, Phase.TRUST_BOTH: 9, Phase.REISSUE: 12, Phase.DROP_OLD: 24}
CRASHES = [(p, n) for p, total in CHECKPOINTS.items() for n in range(1, total + 1)]


def test_the_crash_points_are_every_checkpoint(roots: dict[str, Path]) -> None:
    """Negative control of the crash tests' count: one past the last checkpoint, no kill; the phase ends."""
    c = cluster(roots)
    for phase, total in CHECKPOINTS.items():
        assert run_cli(roots, "next", "--no-restart", "--apply", "--force", crash_at=total + 1) == 0
        assert sa_rotation_status(c).phase is phase


@pytest.mark.parametrize(("phase", "crash_at"), CRASHES, ids=[f"{p.value}-{n}" for p, n in CRASHES])
def test_sigkill_during_a_phase_resumes_to_the_same_end(roots: dict[str, Path], phase: Phase, crash_at: int) -> None:
    """SIGKILL at the crash_at-th checkpoint; a plain `next --apply` then finishes the phase, verified;
    its undo record still holds the files as they were before the phase (abort returns to them); and the
    rotation runs on to the same end state."""
    c = cluster(roots)
    old_key = (roots["cp1"] / PKI / "sa.key").read_bytes()
    for _ in range(PHASES.index(phase)):
        apply_next(c)
    before = trees(roots)
    previous = sa_rotation_status(c).phase
    force = ("--force",) if phase is Phase.DROP_OLD else ()
    assert run_cli(roots, "next", "--no-restart", "--apply", *force, crash_at=crash_at) == -9
    status = sa_rotation_status(c)
    if status.applying is None:  # killed in a backup: nothing in the trees changed yet
        assert status.phase is previous and trees(roots) == before
    else:
        assert status.applying is phase and status.phase is previous
        assert plan_sa_rotation(c, force=True).phase is phase
    assert run_cli(roots, "next", "--no-restart", "--apply", *force) == 0
    status = sa_rotation_status(c)
    assert status.phase is phase and status.applying is None
    assert_tokens_verify_everywhere(roots)
    if phase is not Phase.DROP_OLD:
        assert abort_sa_rotation(c).ok
        assert {p for n in changed(before, trees(roots)).values() for p in n} <= {"/" + STATE}
        for p in PHASES[PHASES.index(phase):]:
            apply_next(c, force=p is Phase.DROP_OLD)
    for cp in CPS:
        pub = (roots[cp] / PKI / "sa.pub").read_bytes()
        assert len(public_keys(pub)) == 1
        assert verifies(sign_token((roots[cp] / PKI / "sa.key").read_bytes()), pub)
        assert not verifies(sign_token(old_key), pub)  # the same end: the old key dropped
        assert not list((roots[cp] / PKI).glob(".kubepki-rotation-sa-*"))


@pytest.mark.parametrize("crash_at", range(1, 7))  # every file of reissue's undo, on 3 nodes
def test_sigkill_during_abort_is_finished_by_aborting_again(roots: dict[str, Path], crash_at: int) -> None:
    c = cluster(roots)
    for _ in range(2):
        apply_next(c)
    after_trust_both = trees(roots)
    apply_next(c)
    assert run_cli(roots, "abort", "--no-restart", "--apply", crash_at=crash_at) == -9
    assert sa_rotation_status(c).phase is Phase.REISSUE  # the records are saved last
    assert abort_sa_rotation(c).ok
    assert {p for n in changed(after_trust_both, trees(roots)).values() for p in n} == {"/" + STATE}
    assert sa_rotation_status(c).phase is Phase.TRUST_BOTH


def test_restarts_roll_the_control_planes_one_at_a_time() -> None:
    """With restart=True each phase's listed restarts roll control plane by control plane, each healthy
    before the next (a recording runner stands in for the component restarts, which need running
    components: the real node's are in tests/test_rotate_sa_realcluster.py); a node that stays unhealthy
    stops the roll there and the phase is not verified."""
    import tempfile

    from kubepki.errors import ConfigError as _ConfigError
    from kubepki.restarts import RestartReport

    with tempfile.TemporaryDirectory() as tmp:
        demo = testing.build_cluster(Path(tmp), nodes=3, workers=1)
        c = Cluster([n.root for n in demo.nodes], labels=[n.name for n in demo.nodes])
        calls: list[tuple[str | None, tuple[str, ...]]] = []

        def runner(node_plan, node):  # type: ignore[no-untyped-def]
            calls.append((node_plan.node, tuple(s.component.value for s in node_plan.steps
                                                if s.action.value == "restart")))
            return RestartReport(node=node_plan.node, plan=node_plan, dry_run=False, outcomes=())

        def sick_cp2(label: str, node: object) -> bool:
            if label == "cp2":
                raise _ConfigError("cp2's kube-apiserver does not answer")
            return True

        assert apply_sa_rotation(plan_sa_rotation(c, now=NOW), backup_dir=BACKUPS, now=NOW, restart=True,
                                 runner=runner).ok
        assert calls == []  # prepare restarts nothing
        result = apply_sa_rotation(plan_sa_rotation(c, now=NOW), backup_dir=BACKUPS, now=NOW, restart=True,
                                   runner=runner, health=sick_cp2, health_timeout=0.1)
        assert not result.ok and any("restarts stopped at cp2" in p for p in result.problems)
        assert calls == [("cp1", ("kube-apiserver",)), ("cp2", ("kube-apiserver",))]  # not cp3, not w1
        assert sa_rotation_status(c).applying is Phase.TRUST_BOTH
        calls.clear()
        ok = lambda label, node: True  # noqa: E731
        assert apply_sa_rotation(plan_sa_rotation(c, now=NOW), backup_dir=BACKUPS, now=NOW, restart=True,
                                 runner=runner, health=ok).ok
        assert [n for n, _ in calls] == ["cp1", "cp2", "cp3"]
        calls.clear()
        assert apply_sa_rotation(plan_sa_rotation(c, now=NOW), backup_dir=BACKUPS, now=NOW, restart=True,
                                 runner=runner, health=ok).ok  # reissue: the signer restarts too
        assert calls == [(cp, ("kube-apiserver", "kube-controller-manager")) for cp in ("cp1", "cp2", "cp3")]


def test_sa_restarts_on_node_directories_are_refused_before_anything_is_written(
        roots: dict[str, Path]) -> None:
    c = cluster(roots)
    assert apply_sa_rotation(plan_sa_rotation(c, now=NOW), backup_dir=BACKUPS, now=NOW, restart=True).ok
    before = trees(roots)
    with pytest.raises(ConfigError, match=r"none of the components to restart runs on cp1 \(kube-apiserver\)"):
        apply_sa_rotation(plan_sa_rotation(c, now=NOW), backup_dir=BACKUPS, now=NOW, restart=True)
    assert trees(roots) == before
    assert apply_sa_rotation(plan_sa_rotation(c, now=NOW), backup_dir=BACKUPS, now=NOW).ok  # positive control
    with pytest.raises(ConfigError, match="none of the components to restart runs"):
        abort_sa_rotation(c, restart=True)
    assert abort_sa_rotation(c).ok
