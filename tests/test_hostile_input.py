"""Hostile input: every parser of untrusted bytes gives a result or a typed error, fast, writing nothing.

The corpora are generated, not hand-picked: real files (the kubeadm fixtures under
tests/fixtures/kubeadm and kubepki.testing demo trees in three key algorithms),
mutated by Hypothesis — truncated, bytes flipped, junk inserted, concatenated,
PEM types swapped, base64 damaged, turned into DER — and YAML/JSON documents whose
structure is mutated (wrong types, missing fields, file references, base64
errors), plus the classic bombs (alias expansion, deep nesting) and inputs just
over every size limit.

The property, for each parser: it returns a result that can be used (its facts,
properties and renderings do not raise either) or raises a
:class:`~kubepki.KubepkiError` subclass, and nothing else; it finishes within a
generous time bound; and it writes nothing (a Python audit hook records any
write the parser attempts). Pathological inputs that could hang or crash the
interpreter (a segfault is not an exception) run in a child process with a timeout,
so that a regression fails its test instead of the whole run.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import gzip
import http.server
import io
import json
import os
import ssl
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import HealthCheck, given, settings, strategies as st

import kubepki
from kubepki.backups import _backups as backups
from kubepki.cli import exit_status
from kubepki.errors import ConfigError, KubeconfigError, KubepkiError, ManifestError, ParseError, PEMError
from kubepki.node._kubeadm_config import parse_duration, parse_kubeadm_config
from kubepki.node._manifests import parse_manifest
from kubepki.objects import _bundles as bundles, probe as probe_module
from kubepki.objects._apiclient import check_live
from kubepki.objects._objects import check_objects
from kubepki.pki import _certs as pki, _yaml as yamlutil
from kubepki.pki._kubeconfig import parse_kubeconfig
from tests import _figures
from tests._hardening import NOW, REPO, copy_tree, demo, snapshot
from tests.kubeadm_trees import FIXTURES
from tests.test_cluster_objects import (
    apiservice,
    configmap,
    kubectl_list,
    secret,
    tls_secret,
    webhook_configuration,
    write_yaml_list,
)
from tests.test_probe import TLSServer

#: Generous: a parser taking longer than this on a few KiB is a hang in the making.
TIME_LIMIT = 5.0
PROPERTY = settings(max_examples=200, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])
FEW = settings(PROPERTY, max_examples=60)

# --------------------------------------------------------------------------------------
# No writes: an audit hook watching every file operation while a parser runs

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WRITE_EVENTS = {"os.rename", "os.replace", "os.remove", "os.unlink", "os.rmdir", "os.mkdir", "os.chmod",
                 "os.chown", "os.symlink", "os.link", "os.truncate", "os.utime", "shutil.copyfile",
                 "shutil.rmtree", "shutil.move"}
_watch = threading.local()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    writes = getattr(_watch, "writes", None)
    if writes is None:
        return
    if event == "open":
        path, mode, flags = (*args, None, None)[:3]
        if "__pycache__" in str(path):
            return  # the interpreter caching a lazily imported module
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS):
            writes.append(f"open {path!r} {mode!r}")
    elif event in _WRITE_EVENTS:
        writes.append(f"{event} {args!r}")


sys.addaudithook(_audit)


@contextlib.contextmanager
def no_writes() -> Iterator[None]:
    """Fail when anything in the block opens a file for writing or changes the filesystem."""
    _watch.writes = []
    try:
        yield
        assert not _watch.writes, _watch.writes
    finally:
        _watch.writes = None


Errors = type[BaseException] | tuple[type[BaseException], ...]


def attempt(parse: Callable[[bytes], Any], data: bytes, *, errors: Errors = KubepkiError,
            limit: float = TIME_LIMIT) -> Any:
    """``parse(data)``: its result or the typed error it raised; anything else fails the test."""
    _figures.count("inputs tried")
    start = time.monotonic()
    with no_writes():
        try:
            result = parse(data)
        except errors as exc:
            result = exc
    if isinstance(result, BaseException):
        assert str(result), "an error says what is wrong"
        assert "\n" not in str(result), "on one line"
        assert "PRIVATE KEY-----" not in f"{result} {result!r}", "an error never quotes a key"
        _figures.count("outputs scanned")
    elapsed = time.monotonic() - start
    assert elapsed < limit, f"{elapsed:.1f}s on {len(data)} bytes"
    return result


# --------------------------------------------------------------------------------------
# The seeds: real files, and material made for the occasion


def _fixture_files() -> dict[str, list[bytes]]:
    out: dict[str, set[bytes]] = {k: set() for k in ("cert", "key", "pub", "kubeconfig", "manifest", "config")}
    for path in sorted(FIXTURES.glob("*/root/**/*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        name = path.name
        if name.endswith((".crt", ".pem")):
            out["cert"].add(data)
        elif name.endswith(".key"):
            out["key"].add(data)
        elif name.endswith(".pub"):
            out["pub"].add(data)
        elif name.endswith(".conf"):
            out["kubeconfig"].add(data)
        elif path.parent.name == "manifests" and name.endswith(".yaml"):
            out["manifest"].add(data)
    for path in sorted(FIXTURES.glob("*/kubeadm-config.yaml")):
        out["config"].add(path.read_bytes())
    return {k: sorted(v) for k, v in out.items()}


def _encrypted_keys() -> list[bytes]:
    """Encrypted private keys: PKCS#8 (PEM and DER) and legacy ``Proc-Type: 4,ENCRYPTED`` PEM."""
    keys = [ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ed25519.Ed25519PrivateKey.generate()]
    out = []
    for key in keys:
        enc = serialization.BestAvailableEncryption(b"secret")
        out.append(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
        out.append(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, enc))
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            out.append(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                         enc))
    return out


@functools.cache
def seeds() -> dict[str, list[bytes]]:
    """Every seed, by kind; built once per process (demo trees from the key pool)."""
    out = _fixture_files()
    with tempfile.TemporaryDirectory() as tmp:
        roots = [demo(Path(tmp) / algo, algorithm=algo) for algo in ("ECDSA-P256", "RSA-2048", "ECDSA-P384")]
        for root in roots:
            etc = root / "etc/kubernetes"
            out["cert"] += [p.read_bytes() for p in sorted((etc / "pki").rglob("*.crt"))]
            out["cert"] += [p.read_bytes() for p in sorted((root / "var/lib/kubelet/pki").glob("*.pem"))
                            if not p.is_symlink()]
            out["key"] += [p.read_bytes() for p in sorted((etc / "pki").rglob("*.key"))]
            out["pub"].append((etc / "pki/sa.pub").read_bytes())
            out["kubeconfig"] += [p.read_bytes() for p in sorted(etc.glob("*.conf"))]
            out["manifest"] += [p.read_bytes() for p in sorted((etc / "manifests").glob("*.yaml"))]
            out["config"].append((etc / "kubeadm-config.yaml").read_bytes())
            info = backups.backup(root, Path(tmp) / "backups", now=NOW)
            with tarfile.open(info.path) as tf:
                member = tf.extractfile(backups.MANIFEST_NAME)
                assert member is not None
                out.setdefault("backup-manifest", []).append(member.read())
        out["objects"] = _objects(roots[0])
    der_keys = []
    for data in out["key"][:6]:
        key = pki.load_private_key(data)
        der_keys.append(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        der_keys.append(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))
    out["key"] += der_keys + _encrypted_keys()
    out["cert"] += [pki.load_certificate(c).public_bytes(serialization.Encoding.DER) for c in out["cert"][:6]]
    out["yaml"] = out["kubeconfig"] + out["manifest"] + out["config"]
    return out


def _objects(root: Path) -> list[bytes]:
    """kubectl JSON and YAML Lists holding a demo node's certificates and keys."""
    pki_dir = root / "etc/kubernetes/pki"
    ca, ca_key = (pki_dir / "ca.crt").read_bytes(), (pki_dir / "ca.key").read_bytes()
    leaf, leaf_key = (pki_dir / "apiserver.crt").read_bytes(), (pki_dir / "apiserver.key").read_bytes()
    items = [
        tls_secret("serving", leaf + ca, leaf_key, ca),
        secret("opaque", {"ca.pem": ca, "notes": b"hello"}),
        configmap("bundle", {"ca.crt": ca.decode()}),
        webhook_configuration("MutatingWebhookConfiguration", "hook", {"a.example.test": ca, "b.example.test": None}),
        apiservice("v1beta1.metrics.k8s.io", ca),
        {"kind": "CustomResourceDefinition", "metadata": {"name": "x.example.test"},
         "spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": base64.b64encode(ca_key).decode()}}}}},
    ]
    as_json = json.dumps(kubectl_list(items), indent=4).encode()
    buf = io.StringIO()
    write_yaml_list(buf, items)
    single = json.dumps(items[0]).encode()
    return [as_json, buf.getvalue().encode(), single, yaml.safe_dump_all(items).encode()]


def seeds_of(*kinds: str) -> st.SearchStrategy[bytes]:
    """One seed of the given kinds (lazily: the seeds are built on first use)."""
    return st.deferred(lambda: st.sampled_from([s for k in kinds for s in seeds()[k]]))


# --------------------------------------------------------------------------------------
# Byte-level mutations

_PEM_TYPES = [b"CERTIFICATE", b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"PUBLIC KEY",
              b"ENCRYPTED PRIVATE KEY", b"CERTIFICATE REQUEST", b"X509 CRL", b"RSA PUBLIC KEY"]


@st.composite
def _mutation(draw: st.DrawFn, data: bytes) -> bytes:  # noqa: C901, PLR0912  -- one mutation per drawn case
    n = len(data)
    op = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "double", "concat", "retype", "base64",
                               "crlf", "der", "begin", "proc-type", "strip-newlines", "junk"]))
    i = draw(st.integers(0, max(n - 1, 0)))
    if op == "truncate":
        return data[:i]
    if op == "flip":
        return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]
    if op == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=32)) + data[i:]
    if op == "delete":
        return data[:i] + data[i + draw(st.integers(1, 64)):]
    if op == "double":
        return data + data
    if op == "concat":
        other = draw(seeds_of("cert", "key", "pub", "kubeconfig"))
        return draw(st.sampled_from([data + other, other + data, data + b"\n" + other]))
    if op == "retype":
        old, new = draw(st.sampled_from(_PEM_TYPES)), draw(st.sampled_from(_PEM_TYPES))
        return data.replace(old, new, draw(st.sampled_from([1, -1])))
    if op == "base64":
        return data[:i] + draw(st.sampled_from([b"!", b"=", b"-", b" ", b"\x00", b"\xff", b"A"])) + data[i + 1:]
    if op == "crlf":
        return data.replace(b"\n", b"\r\n")
    if op == "der":
        try:
            der = pki.split_pem(data)[0].der
        except PEMError:
            return data
        return der[: draw(st.integers(0, len(der)))]
    if op == "begin":
        return data[:i] + b"\n-----BEGIN " + draw(st.sampled_from(_PEM_TYPES)) + b"-----\n" + data[i:]
    if op == "proc-type":
        return data.replace(b"-----\n", b"-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n", 1)
    if op == "strip-newlines":
        return data.replace(b"\n", b"")
    return draw(st.binary(max_size=256))


@st.composite
def mutated(draw: st.DrawFn, *kinds: str) -> bytes:
    """A seed of ``kinds`` with zero to three mutations stacked."""
    data = draw(seeds_of(*kinds))
    for _ in range(draw(st.integers(0, 3))):
        data = draw(_mutation(data))
    return data


# --------------------------------------------------------------------------------------
# Structure-level mutations of YAML and JSON documents

_ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", "!!!", "====", "QUFB", "ä", "../../../../../etc/passwd", "/etc/shadow", "pki/ca.crt",
                     "v1.999999999999999999999999", "1.34", "8760h0m0s", "-1h", "99999999999999999999d",
                     "ECDSA-P256", "RSA-1", "https://[::1", "::/0", "10.96.0.0/12", "Pod", "kubeadm.k8s.io/v1beta4",
                     "kubeadm.k8s.io/v1beta3", "ClusterConfiguration", "InitConfiguration",
                     "registry.k8s.io/kube-apiserver:v" + "9" * 5000 + ".1", "--client-ca-file=relative/ca.crt",
                     "QUFB" * 2000]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.integers(1, 60).map(lambda d: functools.reduce(lambda acc, _: [acc], range(d), [])),
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


@st.composite
def _restructured(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with one node replaced by an odd value, or removed, or its key renamed."""
    paths = list(_paths(doc))
    path = draw(st.sampled_from(paths))
    if not path:
        return draw(_ODD_VALUES)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    op = draw(st.sampled_from(["replace", "replace", "remove", "rename"]))
    if op == "remove":
        del parent[last]
    elif op == "rename" and isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = parent.pop(last)
    else:
        parent[last] = draw(_ODD_VALUES)
    return doc


@st.composite
def restructured_yaml(draw: st.DrawFn, *kinds: str) -> bytes:
    """A YAML seed, parsed, one to three nodes mutated, dumped again."""
    docs = [d for d in yaml.safe_load_all(draw(seeds_of(*kinds))) if d is not None]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(docs) - 1))
        docs[i] = draw(_restructured(docs[i]))
    return yaml.safe_dump_all(docs, width=1 << 20).encode()


@st.composite
def restructured_json(draw: st.DrawFn, kind: str) -> bytes:
    """A JSON seed (or the JSON form of a YAML one), one to three nodes mutated, dumped again."""
    raw = draw(seeds_of(kind))
    docs = [json.loads(raw)] if raw.lstrip()[:1] in (b"{", b"[") else list(yaml.safe_load_all(raw))
    doc = docs[0] if len(docs) == 1 else docs
    for _ in range(draw(st.integers(1, 3))):
        doc = draw(_restructured(doc))
    return json.dumps(doc).encode()


_BOMBS = [
    b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b]\n",
    b"base: &base {kind: Pod}\nmerged: {<<: *base}\n",
    b"a: &anchor-only 1\n",
    b"- !!python/object/apply:os.system ['true']\n",
    b"!!python/name:os.system\n",
    b"a: !!binary ====\n",
    b"a: !!timestamp 2001-13-45\n",
    b"!!set {a, b}\n",
    b"!!omap [1]\n",
    b"a: !custom x\n",
    b"? [a]\n: b\n",
    b"<<: 1\n",
    b"a: \xff\xfe\n",
    "a: b".encode("utf-16"),
    b"a: \x00",
    b"a: " + b"9" * 5000 + b"\n",
    b"a: 1e" + b"9" * 5000 + b"\n",
    b"%YAML 9.9\n---\na: 1\n",
    b"--- 1\n--- 2\n",
    b"{" * 200 + b"}" * 200,
    b"[" * 400 + b"]" * 400,
]


@st.composite
def yaml_hostile(draw: st.DrawFn, kind: str) -> bytes:
    """A bomb, a seed with a bomb inside, or a seed with anchors and aliases sprinkled in."""
    base = draw(seeds_of(kind))
    bomb = draw(st.sampled_from(_BOMBS))
    return draw(st.sampled_from([bomb, base + b"\n" + bomb, bomb + base,
                                 base.replace(b": ", b": &x ", 1), base.replace(b": ", b": *x ", 1)]))


# --------------------------------------------------------------------------------------
# Certificates and keys


def _use_certificates(result: Any) -> None:
    """Everything kubepki does with a parsed certificate must work too."""
    certs = result if isinstance(result, list) else [result]
    for cert in certs:
        facts = pki.cert_facts(cert)
        assert facts.to_dict()["fingerprint_sha256"] == facts.fingerprint_sha256
        pki.signed_by(cert, cert)
        pki.public_key_der(cert.public_key())


@PROPERTY
@given(mutated("cert", "key", "pub"))
def test_certificates_from_mutated_files(data: bytes) -> None:
    """load_certificate(s): a usable certificate or PEMError, never another exception."""
    for parse in (pki.load_certificate, pki.load_certificates):
        result = attempt(parse, data, errors=PEMError)
        if not isinstance(result, PEMError):
            _use_certificates(result)


@PROPERTY
@given(mutated("key", "cert", "pub"))
def test_keys_from_mutated_files(data: bytes) -> None:
    """load_private_key/load_public_key: a key or PEMError; a key's algorithm is known."""
    for parse in (pki.load_private_key, pki.load_public_key):
        result = attempt(parse, data, errors=PEMError)
        if not isinstance(result, PEMError):
            assert pki.key_algorithm(result)
            pki.public_key_der(result)


@PROPERTY
@given(mutated("cert", "key"))
def test_bundles_and_chains_never_raise(data: bytes) -> None:
    """check_bundle/check_chain turn any bytes into findings, keys included."""
    attempt(lambda d: bundles.check_bundle(d, now=NOW), data, errors=())
    key = seeds()["key"][len(data) % len(seeds()["key"])]
    attempt(lambda d: bundles.check_chain(d, now=NOW, key=key), data, errors=())
    attempt(lambda d: bundles.check_chain(seeds()["cert"][0], now=NOW, key=d), data, errors=())


def _with_unknown_key_type(cert_pem: bytes) -> bytes:
    """``cert_pem`` with its RSA public key's algorithm OID (1.2.840.113549.1.1.1) changed to an unknown one."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    rsa_oid = bytes.fromhex("06092a864886f70d010101")
    assert der.count(rsa_oid) == 1  # only the SubjectPublicKeyInfo names it; the signature is sha256WithRSA
    der = der.replace(rsa_oid, rsa_oid[:-1] + b"\x63")
    return b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"


def test_a_name_attribute_with_an_unknown_string_tag_is_refused_not_raised(tmp_path: Path) -> None:
    """etcd-ca with one byte of its subject's string tag changed (hypothesis found it in CI: tag 83): cryptography
    raises on ``cert.subject`` (KeyError in cryptography 48, ValueError in 51). load_certificate refuses it as
    bad-certificate, check_chain and inspect turn it into a finding; control: the unchanged seed etcd-ca parses."""
    odd = (Path(__file__).parent / "fixtures/hostile/unknown-name-tag.pem").read_bytes()
    with pytest.raises((KeyError, ValueError)):
        x509.load_pem_x509_certificate(odd).subject  # noqa: B018
    with pytest.raises(PEMError) as caught:
        pki.load_certificate(odd)
    assert caught.value.code == "bad-certificate"
    assert [f.code for f in bundles.check_chain(odd, now=NOW).findings] == ["bad-certificate"]
    node = kubepki.testing.build_node(tmp_path)
    node.path("/etc/kubernetes/pki/etcd/ca.crt").write_bytes(odd)
    inv = kubepki.inspect(node.as_node(), now=NOW)
    assert inv["etcd-ca"].has("bad-certificate")
    assert any(x509.load_pem_x509_certificate(c).subject for c in seeds()["cert"])


def test_a_certificate_with_an_unknown_key_type_is_a_finding_not_a_crash() -> None:
    """A certificate whose key algorithm cryptography does not know (hypothesis found one in CI: a flipped
    OID byte) matches no key file: check_chain says so, as it does for a well-formed other key (control)."""
    cert = next(c for c in seeds()["cert"]
                if isinstance(x509.load_pem_x509_certificate(c).public_key(), rsa.RSAPublicKey))
    odd = _with_unknown_key_type(cert)
    with pytest.raises(UnsupportedAlgorithm):
        x509.load_pem_x509_certificate(odd).public_key()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    odd_result = bundles.check_chain(odd, now=NOW, key=key)
    control = bundles.check_chain(cert, now=NOW, key=key)
    assert not odd_result.key_matches and not control.key_matches
    assert odd_result.findings


@pytest.mark.parametrize("index", range(8))
def test_encrypted_keys_are_refused_by_name(index: int) -> None:
    """PKCS#8-encrypted (PEM and DER) and legacy Proc-Type keys: PEMError encrypted-key."""
    data = seeds()["key"][-8:][index]
    result = attempt(pki.load_private_key, data, errors=PEMError)
    assert isinstance(result, PEMError) and result.code == "encrypted-key", result


def test_concatenations_pick_the_right_block() -> None:
    """A certificate and its key in one file (either order) load as what is asked for."""
    cert, key = seeds()["cert"][0], seeds()["key"][0]
    for data in (cert + key, key + cert, cert + b"junk\n" + key, cert * 50):
        assert isinstance(attempt(pki.load_certificate, data, errors=PEMError), x509.Certificate)
    assert isinstance(attempt(pki.load_private_key, cert + key), rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    assert len(attempt(pki.load_certificates, cert * 50)) == 50


@pytest.mark.parametrize(("size_delta", "code"), [(1, "too-large"), (4096, "too-large")])
def test_just_over_the_pem_limit(size_delta: int, code: str) -> None:
    """One byte over MAX_PEM_BYTES is refused before parsing; at the limit a padded file parses."""
    cert = seeds()["cert"][0]
    padded = cert + b"\n" * (pki.MAX_PEM_BYTES - len(cert))
    assert isinstance(attempt(pki.load_certificate, padded), x509.Certificate)
    for parse in (pki.load_certificate, pki.load_private_key, pki.load_public_key, pki.load_certificates):
        result = attempt(parse, padded + b"\n" * size_delta)
        assert isinstance(result, PEMError) and result.code == code


def _malformed_extension_cert() -> tuple[bytes, bytes]:
    """A certificate whose outer DER parses but whose certificatePolicies do not; and its key.

    OpenSSL serves it (it does not read that extension); cryptography fails on first access.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.UnrecognizedExtension(ExtensionOID.CERTIFICATE_POLICIES, b"\x01\x02bad"),
                           critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_lazily_malformed_certificate_is_a_typed_error() -> None:
    """A certificate whose extensions fail only when read: PEMError up front, not later."""
    cert, _key = _malformed_extension_cert()
    for data in (cert, pki.split_pem(cert)[0].der):
        result = attempt(pki.load_certificate, data)
        assert isinstance(result, PEMError) and result.code == "bad-certificate", result
    check = attempt(lambda d: bundles.check_chain(d, now=NOW), cert, errors=())
    assert [f.code for f in check.findings] == ["bad-certificate"]


def test_certificate_with_a_damaged_public_key() -> None:
    """An ECDSA certificate whose point is off its curve (one byte flipped): PEMError, not a later crash."""
    cert = next(c for c in map(pki.load_certificate, seeds()["cert"][-12:])
                if isinstance(c.public_key(), ec.EllipticCurvePublicKey))
    der = cert.public_bytes(serialization.Encoding.DER)
    point = cert.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    at = der.index(point) + len(point) - 1
    damaged = der[:at] + bytes([der[at] ^ 1]) + der[at + 1:]
    for form in (damaged, pki._to_pem("CERTIFICATE", damaged)):
        for parse in (pki.load_certificate, pki.load_certificates):
            result = attempt(parse, form)
            assert isinstance(result, PEMError) and result.code == "bad-certificate", result
    check = attempt(lambda d: bundles.check_bundle(d, now=NOW), damaged, errors=())
    assert [f.code for f in check.findings] == ["bad-certificate"]


def test_probe_of_a_server_with_a_malformed_certificate(tmp_path: Path) -> None:
    """A TLS server presenting a certificate with a malformed extension gives a finding, not a crash."""
    cert, key = _malformed_extension_cert()
    server = TLSServer(tmp_path, {"": (cert, key)})
    try:
        _figures.count("inputs tried")
        inv = probe_module.probe([f"127.0.0.1:{server.port}"], now=NOW, timeout=5)
    finally:
        server.close()
    (item,) = inv.items
    assert [f.code for f in item.findings] == ["bad-certificate"], item.findings
    assert exit_status(inv) == 2
    inv.to_json(), inv.table()


@FEW
@given(st.lists(mutated("cert"), min_size=1, max_size=3))
def test_served_chains_never_crash_probe(chain: list[bytes]) -> None:
    """Whatever DER a server presents (mutated real certificates), probe gives an item."""
    ders = []
    for data in chain:
        try:
            ders.append(pki.split_pem(data)[0].der)
        except PEMError:
            ders.append(data)
    served = probe_module.ServedChain(certificates=tuple(ders), complete=True)
    with pytest.MonkeyPatch.context() as mp:  # the network is the one thing left out
        mp.setattr(probe_module, "fetch_chain", lambda *a, **k: served)
        inv = attempt(lambda _d: probe_module.probe(["127.0.0.1:1"], now=NOW), b"", errors=())
    assert len(inv.items) == 1
    inv.to_json(), inv.table(), inv._repr_html_()


# --------------------------------------------------------------------------------------
# Pathological sizes and depths, each in a child process with a timeout


def isolated(code: str, *, timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter; its output. Fails on a crash or a timeout."""
    _figures.count("inputs tried")
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no answer within {timeout} s (a hang)")
    assert proc.returncode == 0, f"exit {proc.returncode} (negative: killed by a signal)\n{proc.stderr[-2000:]}"
    return proc.stdout


_TYPED = """
import sys, time
from kubepki import pki
from kubepki.errors import KubepkiError
from kubepki.pki._kubeconfig import parse_kubeconfig
from kubepki.node._manifests import parse_manifest
from kubepki.node._kubeadm_config import parse_kubeadm_config
from kubepki.objects._objects import check_objects

def run(parse, data):
    start = time.monotonic()
    try:
        parse(data)
        outcome = "result"
    except KubepkiError as exc:
        outcome = type(exc).__name__
    print(outcome, round(time.monotonic() - start, 2))
"""

_DEEP = {
    "flow sequences": "b'[' * n",
    "closed flow sequences": "b'[' * n + b']' * n",
    "flow mappings": "b'{a: ' * n",
    "block sequences": "b'- ' * n",
    "explicit keys": "b'? ' * n",
    "json arrays": "b'[' * n",
}


@pytest.mark.parametrize("shape", sorted(_DEEP))
@pytest.mark.parametrize("parser", ["parse_kubeconfig", "parse_manifest", "parse_kubeadm_config", "check_objects"])
def test_deep_nesting_is_refused_without_crashing(shape: str, parser: str) -> None:
    """Nesting 60 000 deep (libyaml's C composer used to overflow its stack): a typed error, quickly."""
    out = isolated(_TYPED + f"""
n = 60000
data = {_DEEP[shape]}
if {shape!r} == "json arrays":
    data = b'{{"kind": "List", "items": ' + data
run({parser}, data)
""")
    outcome, seconds = out.split()
    assert outcome != "result" or parser == "check_objects", out
    assert float(seconds) < TIME_LIMIT, out


@pytest.mark.parametrize("begin", [b"CERTIFICATE", b"PRIVATE KEY", b"PUBLIC KEY"])
def test_many_begin_lines_are_linear(begin: bytes) -> None:
    """A file of BEGIN lines without END, just under MAX_PEM_BYTES: refused in well under a second."""
    line = b"-----BEGIN " + begin + b"-----\n"
    count = pki.MAX_PEM_BYTES // len(line)
    out = isolated(_TYPED + f"""
data = {line!r} * {count}
for parse in (pki.load_certificate, pki.load_certificates, pki.load_private_key, pki.load_public_key):
    run(parse, data)
run(pki.load_certificate, data + b"-----END x-----\\n")
""")
    for row in out.splitlines():
        outcome, seconds = row.split()
        assert outcome == "PEMError", out
        assert float(seconds) < 2.0, out


def test_just_over_the_yaml_and_object_limits() -> None:
    """One byte over MAX_YAML_BYTES, and one line over MAX_OBJECT_BYTES: refused up front."""
    big = b"a: " + b"x" * yamlutil.MAX_YAML_BYTES
    for parse in (parse_kubeconfig, parse_manifest):
        result = attempt(parse, big, errors=ParseError)
        assert isinstance(result, ParseError) and "too large" in str(result)
    assert isinstance(attempt(parse_kubeadm_config, big, errors=ConfigError), ConfigError)
    from kubepki.objects._objects import MAX_OBJECT_BYTES

    assert isinstance(attempt(check_objects, b"a" * (MAX_OBJECT_BYTES + 2), errors=ParseError), ParseError)


# --------------------------------------------------------------------------------------
# Kubeconfigs


def _use_kubeconfig(result: Any) -> None:
    for cred in (result.ca, result.client_certificate, result.client_key):
        if cred is not None:
            assert cred.embedded == (cred.data is not None)
            assert not cred.data or cred.data.hex() not in repr(result)


@PROPERTY
@given(st.one_of(mutated("kubeconfig"), restructured_yaml("kubeconfig"), yaml_hostile("kubeconfig")))
def test_kubeconfigs(data: bytes) -> None:
    """parse_kubeconfig: a Kubeconfig or KubeconfigError, whatever the bytes or the structure."""
    result = attempt(lambda d: parse_kubeconfig(d, path="/etc/kubernetes/admin.conf"), data, errors=KubeconfigError)
    if not isinstance(result, KubeconfigError):
        _use_kubeconfig(result)


_CRED_VALUES = st.sampled_from(["!!!", "A", "AAA", "QUFB====", "ä", "", "====", 5, [], None, {"a": 1}, True,
                                "QUFB" * 3000, "-----BEGIN CERTIFICATE-----", "\x00"])
_REF_VALUES = st.sampled_from(["/etc/passwd", "../../../../../../etc/shadow", "", "pki/ca.crt", "/", ".", "..",
                               5, [], None, "~/x", "a\x00b", "x" * 5000])


@PROPERTY
@given(st.sampled_from(["certificate-authority-data", "client-certificate-data", "client-key-data",
                        "certificate-authority", "client-certificate", "client-key", "server", "token"]),
       st.one_of(_CRED_VALUES, _REF_VALUES), seeds_of("kubeconfig"))
def test_kubeconfig_credentials(field: str, value: Any, seed: bytes) -> None:
    """Embedded data with base64 errors and file references of every shape: typed errors only."""
    doc = yaml.safe_load(seed)
    section = "clusters" if field in ("certificate-authority-data", "certificate-authority", "server") else "users"
    entry = doc[section][0]["cluster" if section == "clusters" else "user"]
    for other in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
        if other.removesuffix("-data") == field:
            entry.pop(other, None)  # so that the reference is the one used
    entry[field] = value
    result = attempt(lambda d: parse_kubeconfig(d, path="/etc/kubernetes/admin.conf"),
                     yaml.safe_dump(doc).encode(), errors=KubeconfigError)
    if not isinstance(result, KubeconfigError):
        _use_kubeconfig(result)


def test_kubeconfig_file_references_stay_inside_the_root(tmp_path: Path) -> None:
    """References climbing out of the root (or absolute host paths) read the node's files, never the host's."""
    root = demo(tmp_path / "n")
    outside = tmp_path / "outside.crt"
    secret_cn = "outside-of-the-root"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, secret_cn)])
    foreign = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(7).not_valid_before(NOW - dt.timedelta(days=1))
               .not_valid_after(NOW + dt.timedelta(days=9)).sign(key, hashes.SHA256()))
    outside.write_bytes(foreign.public_bytes(serialization.Encoding.PEM))
    conf = root / "etc/kubernetes/admin.conf"
    doc = yaml.safe_load(conf.read_bytes())
    user = doc["users"][0]["user"]
    user.pop("client-certificate-data")
    user["client-certificate"] = "../" * 12 + str(outside).lstrip("/")
    cluster = doc["clusters"][0]["cluster"]
    cluster.pop("certificate-authority-data")
    cluster["certificate-authority"] = str(outside)
    conf.write_bytes(yaml.safe_dump(doc).encode())
    before = snapshot(tmp_path)
    inv = attempt(lambda _d: kubepki.inspect(root, now=NOW), b"", errors=())
    assert secret_cn not in inv.to_json() and secret_cn not in inv.table()
    item = inv["admin.conf"]
    assert item.status.value in ("missing", "invalid"), item
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------------------
# Static pod manifests and kubeadm configs


@PROPERTY
@given(st.one_of(mutated("manifest"), restructured_yaml("manifest"), yaml_hostile("manifest")))
def test_manifests(data: bytes) -> None:
    """parse_manifest: a manifest whose properties work, or ManifestError."""
    result = attempt(lambda d: parse_manifest(d, path="/etc/kubernetes/manifests/kube-apiserver.yaml"), data,
                     errors=ManifestError)
    if not isinstance(result, ManifestError):
        assert isinstance(result.component, str)
        result.image_version  # noqa: B018 - a property that parses the image tag
        dict(result.flags), dict(result.host_paths)


@PROPERTY
@given(st.one_of(mutated("config"), restructured_yaml("config"), yaml_hostile("config")))
def test_kubeadm_configs(data: bytes) -> None:
    """parse_kubeadm_config: a config whose properties work, or ConfigError."""
    result = attempt(lambda d: parse_kubeadm_config(d, path="/etc/kubernetes/kubeadm-config.yaml"), data,
                     errors=ConfigError)
    if not isinstance(result, ConfigError):
        result.control_plane_host, result.service_vip, result.key_algorithm  # noqa: B018


@PROPERTY
@given(st.one_of(st.text(max_size=40), st.from_regex(r"\d{1,30}(d|h|m|s|ms)", fullmatch=True),
                 st.from_regex(r"(\d{1,400}(\.\d{1,5})?(h|m|s)){1,4}", fullmatch=True)))
def test_durations(text: str) -> None:
    """parse_duration (config fields and --validity/--warn-within): a timedelta or ConfigError."""
    result = attempt(lambda d: parse_duration(d.decode()), text.encode(), errors=ConfigError)
    assert isinstance(result, ConfigError) or result >= dt.timedelta(0)


@pytest.mark.parametrize("value", ["99999999999999d", "9" * 5000 + "d", "9" * 5000 + "h", "1e400h"],
                         ids=["days-beyond-timedelta", "5000-digit-days", "5000-digit-hours", "exponent"])
def test_huge_durations_are_config_errors(value: str) -> None:
    """Day counts beyond timedelta's range are refused as such, not with OverflowError."""
    assert isinstance(attempt(lambda d: parse_duration(d.decode()), value.encode(), errors=ConfigError),
                      ConfigError)


@pytest.mark.parametrize("version", ["v" + "9" * 5000 + ".1", "'1." + "9" * 5000 + "'", "v1.34." + "9" * 5000],
                         ids=["major", "minor", "patch"])
def test_huge_version_numbers(version: str) -> None:
    """A kubernetesVersion or image tag with thousands of digits: a version, no version or ConfigError."""
    config = (b"apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: "
              + version.encode() + b"\n")
    result = attempt(parse_kubeadm_config, config, errors=ConfigError)
    if version.startswith("v1.34."):
        assert str(result.kubernetes_version) == "1.34"  # the patch level is never converted
    else:
        assert isinstance(result, ConfigError), result
    tag = version.strip("'")
    manifest = (b"apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver}\nspec:\n  containers:\n"
                b"  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:" + tag.encode() + b"\n")
    image_version = attempt(lambda d: parse_manifest(d).image_version, manifest)
    assert image_version is None or str(image_version) == "1.34"


# --------------------------------------------------------------------------------------
# Backup manifests (inside archives: untrusted)


@pytest.mark.parametrize(("created", "shown"), [
    ("-----BEGIN PRIVATE KEY-----2027-01-01T00:00:00Z", False),  # found by hypothesis: never echoed
    ("yesterday", True),  # negative control: an ordinary bad value is still named
])
def test_a_bad_manifest_value_is_named_but_never_a_pem_block(created: str, shown: bool) -> None:
    """Errors about an archive's manifest name its bad values, scrubbed of PEM text (errors.scrub):
    an ordinary value is shown as it is, a pasted key's armour never."""
    doc = {"format": backups.FORMAT, "kubepki_version": "0", "node": "cp1", "created": created}
    result = attempt(backups._parse_manifest, json.dumps(doc).encode(), errors=backups._Invalid)
    assert isinstance(result, backups._Invalid)
    assert ("PRIVATE KEY" in str(result)) is False
    assert (created in str(result)) is shown


def _archive(path: Path, manifest: bytes) -> Path:
    """An archive whose first member is ``manifest`` (the rest of the members are absent)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        ti = tarfile.TarInfo(backups.MANIFEST_NAME)
        ti.size = len(manifest)
        tf.addfile(ti, io.BytesIO(manifest))
    path.write_bytes(buf.getvalue())
    return path


@PROPERTY
@given(st.one_of(restructured_json("backup-manifest"), mutated("backup-manifest")))
def test_backup_manifests(data: bytes) -> None:
    """The manifest parser: a manifest or its schema error; through an archive: a report, never a crash."""
    result = attempt(backups._parse_manifest, data, errors=backups._Invalid)
    assert isinstance(result, backups._Invalid | backups._Manifest)
    with tempfile.TemporaryDirectory() as tmp:
        archive = _archive(Path(tmp) / "a.tar.gz", data)
        report = attempt(lambda _d: backups.verify_backup(archive), b"", errors=())
        if report.ok:  # only a manifest listing no member can match an archive holding none
            assert isinstance(result, backups._Manifest) and not result.members
        report.to_dict(), report.table(), report._repr_html_()
        node = Path(tmp) / "node"
        (node / "etc/kubernetes/pki").mkdir(parents=True)
        before = snapshot(Path(tmp))
        attempt(lambda _d: backups.plan_restore(archive, node), b"")
        assert snapshot(Path(tmp)) == before


# --------------------------------------------------------------------------------------
# kubectl output (Secrets, ConfigMaps, webhooks, APIServices)


def _use_objects(inv: Any) -> None:
    inv.to_json(), inv.table(), inv._repr_html_(), repr(inv)
    code = exit_status(inv)
    assert code in (0, 1, 2) or (code == 3 and not inv.items), code  # 3: nothing was checked


@PROPERTY
@given(st.one_of(mutated("objects"), restructured_json("objects"), yaml_hostile("objects")))
def test_kubectl_output(data: bytes) -> None:
    """check_objects: an inventory (damage on its items) or ParseError for malformed JSON/YAML."""
    result = attempt(lambda d: check_objects(d, now=NOW), data, errors=ParseError)
    if not isinstance(result, ParseError):
        _use_objects(result)


@pytest.mark.parametrize("body", [
    b'{"kind": "List", "items": [' + b"1" * 6000 + b"]}",
    b'{"kind": "List", "items": [{"kind": "Secret", "data": {"a": ' + b"9" * 6000 + b"}}]}",
    b'{"kind": "List", "items": [' + b"[" * 5000,
    b'{"kind": "List", "items": [{"kind": "Secret", "data": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}]}",
    b'{"kind": "Secret", "data": {"a": NaN, "b": Infinity}}',
    b'{"kind": "Secret", "data": {"tls.crt": "' + b"\xc3\x28" + b'"}}',
], ids=["long-item", "long-value", "deep-unclosed", "deep-value", "nan", "bad-utf8"])
def test_kubectl_json_edge_cases(body: bytes) -> None:
    """Huge numbers, deep arrays, NaN, bad UTF-8 in kubectl JSON: an inventory or ParseError."""
    result = attempt(lambda d: check_objects(d, now=NOW), body, errors=ParseError)
    if not isinstance(result, ParseError):
        _use_objects(result)


# --------------------------------------------------------------------------------------
# API server responses (live mode): a hostile server on loopback


class _Hostile(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's configured status and body."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def hostile_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[http.server.HTTPServer, Path]]:
    """An HTTPS server with a demo node's API server certificate, and a kubeconfig for it."""
    tmp = tmp_path_factory.mktemp("api")
    root = demo(tmp / "n")
    pki_dir = root / "etc/kubernetes/pki"
    serving = (pki_dir / "apiserver.crt").read_bytes() + (pki_dir / "apiserver.key").read_bytes()
    (tmp / "serving.pem").write_bytes(serving)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp / "serving.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.answer = (200, b"{}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {
            "server": f"https://127.0.0.1:{server.server_address[1]}", "tls-server-name": "kubernetes",
            "certificate-authority-data": base64.b64encode((pki_dir / "ca.crt").read_bytes()).decode()}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))
    yield server, kubeconfig
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "body"), [
    (500, b"[" * 60000),
    (403, b'{"message": ' + b"[" * 60000 + b"}"),
    (500, b"\xff\xfe garbage"),
    (404, b'{"message": 5}'),
    (200, b'{"kind": "SecretList", "items": [' + b"[" * 60000),
    (200, b'{"kind": "SecretList", "items": [' + b"9" * 6000 + b"]}"),
    (200, b'{"kind": "SecretList", "items": [{"data": {"tls.crt": 5}}'),
    (200, b"not json at all"),
    (200, b""),
    (200, b'{"kind": "SecretList", "metadata": {"continue": 5}, "items": []}'),
    (200, b'{"kind": "SecretList", "metadata": {"continue": "again"}, "items": []}'),
], ids=["deep-error", "deep-message", "binary-error", "odd-message", "deep-items", "long-number", "truncated",
        "not-json", "empty", "numeric-continue", "endless-continue"])
def test_hostile_api_server_responses(hostile_api: tuple[http.server.HTTPServer, Path], status: int,
                                      body: bytes) -> None:
    """Whatever an API server answers, check_live gives an inventory or a typed error."""
    server, kubeconfig = hostile_api
    server.answer = (status, body)  # type: ignore[attr-defined]
    outcome: list[Any] = []

    def live() -> None:
        outcome.append(attempt(lambda _d: check_live(kubeconfig, now=NOW, timeout=10), body, errors=KubepkiError))

    # In a thread, so that a client that never stops paging fails the test instead of hanging
    # it (the thread ends with an error once the fixture stops the server).
    thread = threading.Thread(target=live, daemon=True)
    thread.start()
    thread.join(TIME_LIMIT * 4)
    assert not thread.is_alive(), "check_live did not finish: paging without end?"
    assert outcome, "check_live raised a foreign exception (see the thread's traceback)"
    if not isinstance(outcome[0], KubepkiError):
        _use_objects(outcome[0])


# --------------------------------------------------------------------------------------
# Whole nodes: one damaged file, and inspection, renewal planning and restore planning


_NODE_FILES = {
    "cert": ["etc/kubernetes/pki/apiserver.crt", "etc/kubernetes/pki/ca.crt", "etc/kubernetes/pki/etcd/ca.crt",
             "var/lib/kubelet/pki/kubelet-client-current.pem"],
    "key": ["etc/kubernetes/pki/apiserver.key", "etc/kubernetes/pki/ca.key", "etc/kubernetes/pki/sa.key"],
    "pub": ["etc/kubernetes/pki/sa.pub"],
    "kubeconfig": ["etc/kubernetes/admin.conf", "etc/kubernetes/kubelet.conf", "etc/kubernetes/scheduler.conf"],
    "manifest": ["etc/kubernetes/manifests/kube-apiserver.yaml", "etc/kubernetes/manifests/etcd.yaml"],
    "config": ["etc/kubernetes/kubeadm-config.yaml"],
}


@pytest.fixture(scope="module")
def base_node(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A demo node, and a backup of it."""
    tmp = tmp_path_factory.mktemp("node")
    root = demo(tmp / "base")
    return root, backups.backup(root, tmp / "backups", now=NOW).path


@st.composite
def damaged_file(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(_NODE_FILES)))
    path = draw(st.sampled_from(_NODE_FILES[kind]))
    if kind in ("kubeconfig", "manifest", "config"):
        data = draw(st.one_of(mutated(kind), restructured_yaml(kind), yaml_hostile(kind)))
    else:
        data = draw(mutated(kind))
    return path, data


@FEW
@given(case=damaged_file())
def test_a_damaged_file_on_a_node(base_node: tuple[Path, Path], case: tuple[str, bytes]) -> None:
    """Inspecting and planning on a node with one damaged file: a result or a typed error, nothing written."""
    rel, data = case
    base, archive = base_node
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_tree(base, Path(tmp) / "n")
        target = root / rel
        if target.is_symlink():
            target.unlink()
        target.write_bytes(data)
        before = snapshot(root)
        inv = attempt(lambda _d: kubepki.inspect(root, now=NOW), data)
        if not isinstance(inv, KubepkiError):
            inv.to_json(), inv.table(), inv._repr_html_()
            assert exit_status(inv) in (0, 1, 2)
        plan = attempt(lambda _d: kubepki.plan_renewal(root, "all", now=NOW), data)
        if not isinstance(plan, KubepkiError):
            plan.to_json(), plan.table(), plan._repr_html_()
        attempt(lambda _d: kubepki.plan_restore(archive, root), data)
        assert snapshot(root) == before


def test_audit_hook_sees_writes(tmp_path: Path) -> None:
    """Negative control: the no-writes check does catch a write."""
    with pytest.raises(AssertionError, match="open"), no_writes():
        (tmp_path / "x").write_bytes(b"x")
    with pytest.raises(AssertionError, match=r"os\.rename"), no_writes():
        os.rename(tmp_path / "x", tmp_path / "y")


def test_time_bound_is_enforced() -> None:
    """Negative control: a slow parser fails the time bound."""
    with pytest.raises(AssertionError, match="bytes"):
        attempt(lambda _d: time.sleep(0.05), b"x", limit=0.01)
    with pytest.raises(ZeroDivisionError):
        attempt(lambda _d: 1 / 0, b"x")


def test_node_paths_in_kubeconfigs_are_node_paths() -> None:
    """A relative reference resolves against the kubeconfig's directory, as a node path."""
    doc = (b"current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
           b"clusters: [{name: k, cluster: {server: 'https://x', certificate-authority: ../../../../x}}]\n"
           b"users: [{name: u, user: {client-key: /etc/shadow}}]\n")
    kc = attempt(lambda d: parse_kubeconfig(d, path="/etc/kubernetes/admin.conf"), doc)
    assert kc.ca.file == PurePosixPath("/etc/kubernetes/../../../../x")
    assert kc.client_key.file == PurePosixPath("/etc/shadow")
