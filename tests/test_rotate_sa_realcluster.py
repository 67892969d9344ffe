"""The service-account key rotation on the real kubeadm node, judged by the real kube-apiserver's answers.

A token signed by the old key (one forged as kube-apiserver signs, one a TokenRequest issued before the
rotation) keeps working through trust-both and reissue; a TokenRequest token issued after reissue is
signed by the new key (checked with cryptography) and accepted; after drop-old (forced) the old key's
tokens get 401 and the new one 200. Each phase restarts what its plan lists, by kubepki (``restart=True``:
the static pods through their manifests, one node at a time, before the phase is verified). At the end sa.key and
sa.pub are restored from the first backup and both components restarted: other tests share the cluster.

Run: ``KUBEPKI_REALCLUSTER_PORT_OFFSET=N python3 -m pytest -m realcluster tests/test_rotate_sa_realcluster.py``
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kubepki.cluster import PHASES, Cluster, Phase, apply_sa_rotation, plan_sa_rotation, sa_rotation_status
from tests.realcluster import RealCluster

pytestmark = pytest.mark.realcluster

SA = "/api/v1/namespaces/default/serviceaccounts/default"
REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
BACKUPS = "/var/backups/kubepki-rotate-sa-test"
LABEL = "cp1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_token(key: rsa.RSAPrivateKey, uid: str) -> str:
    """A token for default/default signed by ``key`` as kube-apiserver signs one (RS256, its issuer)."""
    now = int(time.time())
    issuer = "https://kubernetes.default.svc.cluster.local"
    claims = {"iss": issuer, "aud": [issuer], "sub": "system:serviceaccount:default:default",
              "iat": now - 10, "nbf": now - 10, "exp": now + 3600,
              "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "default", "uid": uid}}}
    signing_input = f"{_b64(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))}"


def token_request(c: RealCluster) -> str:
    r = c.api(f"{SA}/token", "POST", {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                      "spec": {"expirationSeconds": 3600}})
    assert r.status == 201, r.data[:300]
    return str(r.json()["status"]["token"])


def signed_with(token: str, public: Any) -> bool:
    head, claims, sig = token.split(".")
    try:
        public.verify(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)), f"{head}.{claims}".encode(),
                      padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def review(c: RealCluster, token: str) -> int:
    """The status of a SelfSubjectReview with ``token`` (201: authenticated, 401: refused)."""
    return c.api(REVIEW, "POST", {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                 token=token).status


def get(c: RealCluster, token: str) -> int:
    """The status of a GET of /api (discovery: 200 for any authenticated user, 401 for a refused token)."""
    return c.api("/api", token=token).status


def from_backup(c: RealCluster, archive: str, names: tuple[str, ...]) -> dict[str, bytes]:
    with tarfile.open(c.root / archive.lstrip("/")) as tar:
        out = {}
        for name in names:
            member = tar.extractfile(f"etc/kubernetes/pki/{name}")
            assert member is not None
            out[name] = member.read()
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    mode = path.stat().st_mode & 0o777
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def test_sa_rotation_judged_by_tokens(real_cluster: RealCluster) -> None:
    c = real_cluster
    cluster = Cluster([str(c.root)], labels=[LABEL])
    original = {n: (c.pki / n).read_bytes() for n in ("sa.key", "sa.pub")}
    old_key = serialization.load_pem_private_key(original["sa.key"], None)
    assert isinstance(old_key, rsa.RSAPrivateKey)
    uid = c.api(SA).json()["metadata"]["uid"]
    old_tokens = {"forged": forged_token(old_key, uid), "requested": token_request(c)}
    assert all(signed_with(t, old_key.public_key()) for t in old_tokens.values())
    assert {n: review(c, t) for n, t in old_tokens.items()} == {"forged": 201, "requested": 201}
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert review(c, forged_token(stranger, uid)) == 401  # negative control: an unknown key's token
    first_backup: str | None = None
    new_token = ""
    try:
        for phase in PHASES:
            plan = plan_sa_rotation(cluster, force=phase is Phase.DROP_OLD, now=dt.datetime.now(dt.timezone.utc))
            assert plan.phase is phase
            if phase is Phase.DROP_OLD:
                assert plan.forced and any("legacy Secret-based tokens" in n for n in plan.notes)
            # kubepki restarts what the plan lists (kube-apiserver, and KCM at reissue) before it verifies
            result = apply_sa_rotation(plan, backup_dir=BACKUPS, restart=True, runner=c.restart_runner())
            assert result.ok, result.problems
            first_backup = first_backup or result.backups[LABEL]
            c.wait_ready(120)
            status = {n: review(c, t) for n, t in old_tokens.items()}
            if phase is not Phase.DROP_OLD:
                assert status == {"forged": 201, "requested": 201}, phase
            if phase is Phase.REISSUE:
                new_pub = serialization.load_pem_public_key((c.pki / "sa.pub").read_bytes().split(
                    b"-----END PUBLIC KEY-----")[0] + b"-----END PUBLIC KEY-----\n")
                new_token = token_request(c)
                assert signed_with(new_token, new_pub), "the restarted kube-apiserver signs with the new key"
                assert not signed_with(new_token, old_key.public_key())
                assert review(c, new_token) == 201
            if phase is Phase.DROP_OLD:
                assert status == {"forged": 401, "requested": 401}
                assert review(c, new_token) == 201
                assert get(c, new_token) == 200 and get(c, old_tokens["requested"]) == 401
        assert sa_rotation_status(cluster).next_phase is None
    finally:
        # put the cluster's own key pair back, from the backup taken before prepare changed anything
        restored = from_backup(c, first_backup, ("sa.key", "sa.pub")) if first_backup else original
        assert restored == original
        changed = any((c.pki / n).read_bytes() != data for n, data in restored.items())
        for name, data in restored.items():
            _write_atomic(c.pki / name, data)
        for leftover in c.pki.glob(".kubepki-rotation-sa*"):
            leftover.unlink()
        if changed:
            c.restart_static_pod("kube-apiserver")
            c.restart_static_pod("kube-controller-manager")
    assert review(c, old_tokens["forged"]) == 201  # healthy again, with its own key
