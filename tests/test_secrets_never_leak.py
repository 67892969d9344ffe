"""No secret leaves: private key material never appears in anything kubepki says.

A broad run of operations — inspect, renew (plan, apply, CSR mode, install-signed,
kubeconfig-user), backup, verify, restore (plan and apply), restarts plan, secrets
check of kubectl output holding the nodes' keys, probe and verify-served of a TLS
server holding one, metrics; every CLI command in table and JSON form — and the
str, repr, HTML and JSON of every result object, the messages of the errors the
hostile corpora raise (with libyaml and with pure-Python PyYAML, whose error
snippets quote the offending line) and every log record at DEBUG. All of that
text is scanned for PEM private key headers and for the key material of every
private key of the trees involved: each base64 line of its PEM, windows of its
base64 form as kubeconfigs embed it, and its private numbers in decimal and hex.

The :func:`scanner` fixture is requested explicitly by the tests that feed it;
each test fails if anything was found, and a negative control shows the scan
finds a planted key.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import kubepki
from kubepki.errors import KubepkiError
from kubepki.objects import probe
from kubepki.pki import _certs as pki, _issuing as issuing, _yaml as yamlutil
from kubepki.pki._kubeconfig import parse_kubeconfig
from kubepki.renewal import _renewal as renewal
from tests import _figures
from tests._hardening import NOW, NOW_ARG, PKI, copy_tree, demo, run_cli
from tests.kubeadm_trees import materialize
from tests.test_cluster_objects import kubectl_list, secret, tls_secret
from tests.test_probe import TLSServer

_HEADER = re.compile(r"-----(BEGIN|END) [A-Z0-9 ]*PRIVATE KEY-----|PRIVATE KEY-----")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----\r?\n(.*?)-----END[^\n]*\n?", re.DOTALL)
#: Key material is searched as every run of this many base64 characters: a fragment of a
#: key quoted anywhere (an error's snippet, a repr) holds one.
WINDOW = 24
_TOKEN = re.compile(rf"[A-Za-z0-9+/=]{{{WINDOW},}}")
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _secret_ints(key: Any) -> list[int]:
    """A private key's secret numbers (not its public half, which certificates carry too)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return [key.private_numbers().private_value]
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        return [n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp]
    return []


def _grams(text: str) -> Iterator[str]:
    for i in range(len(text) - WINDOW + 1):
        yield text[i:i + WINDOW]


def _secret_span(pem_text: bytes, key: Any) -> tuple[int, int] | None:
    """The span of ``pem_text`` whose base64 characters encode only the key's secret numbers."""
    der = pki.split_pem(pem_text)[0].der
    found = []
    for value in _secret_ints(key):
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        at = der.find(raw)
        if at >= 0:
            found.append((at, at + len(raw)))
    if not found:
        return None
    lo, hi = min(a for a, _ in found), max(b for _, b in found)
    body = pem_text.index(b"\n") + 1
    chars = [i for i in range(body, len(pem_text)) if pem_text[i] in _B64]
    c_lo, c_hi = lo * 4 // 3 + 2, hi * 4 // 3 - 2  # whole characters of secret bits only
    return chars[c_lo], chars[c_hi - 1] + 1


class Scanner:
    """Collects every text produced, and the key material that must not be in any of it."""

    def __init__(self) -> None:
        self.grams: set[str] = set()
        self.numbers: set[str] = set()
        self.texts: list[tuple[str, str]] = []

    def learn(self, *roots: Path) -> None:
        """Every private key under ``roots``: PEM files, and keys embedded in kubeconfigs."""
        for root in roots:
            for path in root.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    data = path.read_bytes()
                    self._learn_pem(data)
                    for m in re.finditer(rb"client-key-data: *(\S+)", data):
                        try:
                            self._learn_pem(base64.b64decode(m.group(1)), embedded=m.group(1).decode())
                        except binascii.Error:
                            pass

    def _learn_pem(self, data: bytes, embedded: str | None = None) -> None:
        for m in _PEM.finditer(data):
            pem_text = m.group(0)
            try:
                key = pki.load_private_key(pem_text)
            except KubepkiError:
                continue
            for value in _secret_ints(key):
                self.numbers.update({str(value)[:WINDOW], format(value, "x")[:WINDOW],
                                     format(value, "X")[:WINDOW]})
            span = _secret_span(pem_text, key)
            if span is None:
                continue
            lo, hi = span
            self.grams.update(_grams("".join(chr(c) for c in pem_text[lo:hi] if c in _B64)))
            if embedded is not None:  # the same key as a kubeconfig embeds it: base64 of the PEM
                offset = data.index(pem_text)
                e_lo, e_hi = (offset + lo) * 4 // 3 + 4, (offset + hi) * 4 // 3 - 4
                self.grams.update(_grams(embedded[e_lo:e_hi]))

    def add(self, label: str, value: Any) -> None:
        """One output: text, bytes, or an object (its str, repr, HTML and JSON are all taken)."""
        if isinstance(value, bytes):
            self.texts.append((label, value.decode("utf-8", "replace")))
            return
        if isinstance(value, str):
            self.texts.append((label, value))
            return
        self.texts.append((f"{label} repr", repr(value)))
        self.texts.append((f"{label} str", str(value)))
        for method in ("_repr_html_", "to_json", "table"):
            fn = getattr(value, method, None)
            if callable(fn):
                self.texts.append((f"{label} {method}", str(fn())))
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            self.texts.append((f"{label} to_dict", json.dumps(to_dict(), default=str)))
        if isinstance(value, BaseException):
            self.texts.append((f"{label} args", repr(value.args)))

    def add_all(self, label: str, values: Iterable[Any]) -> None:
        for i, v in enumerate(values):
            self.add(f"{label}[{i}]", v)

    def findings(self) -> list[str]:
        """Each output that holds a key header or key material."""
        hits = []
        for label, text in self.texts:
            if _HEADER.search(text):
                hits.append(f"{label}: a private key header")
            for token in _TOKEN.findall(text):
                leaked = next((g for g in _grams(token) if g in self.grams or g in self.numbers), None)
                if leaked is not None:
                    hits.append(f"{label}: key material {leaked[:8]}...")
        return hits

    def check(self) -> None:
        """Count what was scanned and found; fail on any finding."""
        assert len(self.grams) > 1000 and self.numbers, "the scanner learnt the keys"
        hits = self.findings()
        _figures.count("outputs scanned", len(self.texts))
        _figures.count("secrets found", len(hits))
        assert hits == [], hits[:20]


@pytest.fixture
def scanner(caplog: pytest.LogCaptureFixture) -> Iterator[Scanner]:
    """A scanner; log records of everything the test does (DEBUG and up) are added to it at the end."""
    caplog.set_level(logging.DEBUG)
    scan = Scanner()
    yield scan
    scan.add("log", caplog.text)
    for record in caplog.records:
        scan.add("log record", f"{record.getMessage()} {record.args!r}")


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two demo nodes (ECDSA and RSA keys) and a tree kubeadm wrote."""
    tmp = tmp_path_factory.mktemp("leaks")
    return {
        "ecdsa": demo(tmp / "ecdsa"),
        "rsa": demo(tmp / "rsa", algorithm="RSA-2048"),
        "kubeadm": materialize("single-full", tmp / "kubeadm"),
    }


def cli(scan: Scanner, argv: list[str]) -> Any:
    """Run the command line, and scan what it printed."""
    run = run_cli(argv)
    scan.add(f"kubepki {' '.join(argv[:3])} stdout", run.out)
    scan.add(f"kubepki {' '.join(argv[:3])} stderr", run.err)
    return run


def test_every_command_in_table_and_json(scanner: Scanner, trees: dict[str, Path], tmp_path: Path) -> None:
    """check, backup, verify, restore, renew, CSR mode, install-signed, restarts, metrics, demo: no key material."""
    for label, base in trees.items():
        root = copy_tree(base, tmp_path / label)
        scanner.learn(root)
        r = ["--root", str(root)]
        for output in ("table", "json"):
            o = ["-o", output]
            cli(scanner, ["check", *r, "--now", NOW_ARG, *o])
            cli(scanner, ["check", *r, "--now", NOW_ARG, *o, "-q"])
            created = cli(scanner, ["backup", *r, "--backup-dir", str(tmp_path / f"{label}-b"), "-o", "json"])
            archive = json.loads(created.out)["path"]
            cli(scanner, ["backup", "list", str(tmp_path / f"{label}-b"), *o])
            cli(scanner, ["backup", "verify", archive, *o])
            cli(scanner, ["restore", archive, *r, *o])
            cli(scanner, ["renew", "all", *r, "--now", NOW_ARG, *o])
            cli(scanner, ["restarts", "plan", "--changed", "apiserver", *r, *o])
            cli(scanner, ["renew", "all", *r, "--now", NOW_ARG, "--apply", "--force-invalid-times", "--backup-dir",
                          str(tmp_path / f"{label}-b"), *o])
            scanner.learn(root)  # the new keys too
            cli(scanner, ["restore", archive, *r, "--apply", "--accept-changed", "--no-backup", *o])
            csr = tmp_path / f"{label}-csr-{output}"
            cli(scanner, ["renew", "--csr", str(csr), "all", *r, *o])
            scanner.learn(csr)
            _sign_csrs(csr, root)
            cli(scanner, ["certs", "install-signed", str(csr), *r, "--now", NOW_ARG, "--no-backup", *o])
            cli(scanner, ["certs", "switch-kubelet-conf", *r, "--now", NOW_ARG, *o])
            cli(scanner, ["certs", "create-super-admin", *r, "--now", NOW_ARG, *o])
        scanner.learn(root)
        cli(scanner, ["metrics", *r])
        cli(scanner, ["renew", "--resume", *r])
        # kubeconfig-user prints a new private key by design (a kubeconfig to hand out);
        # what it must not print is any key of the node.
        cli(scanner, ["certs", "kubeconfig-user", "--client-name", "jane", "--org", "devs", *r, "--now", NOW_ARG])
    cli(scanner, ["demo", str(tmp_path / "demo-out")])
    cli(scanner, ["check", "--demo", "--now", NOW_ARG])
    scanner.learn(tmp_path / "demo-out")
    scanner.check()


def _sign_csrs(csr_dir: Path, root: Path) -> None:
    """Sign the CSRs kubepki wrote with the node's own CA, as an external CA would."""
    from cryptography import x509

    ca_cert = pki.load_certificate((root / PKI / "ca.crt").read_bytes())
    ca_key = pki.load_private_key((root / PKI / "ca.key").read_bytes())
    signer = issuing.Signer.from_key("ca", ca_cert, ca_key)
    for path in csr_dir.glob("*.csr"):
        csr = x509.load_pem_x509_csr(path.read_bytes())
        name = path.stem
        try:
            entry = kubepki.catalog.get(name)
        except KubepkiError:
            continue
        if entry.signer != "ca":
            continue
        builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
                   .public_key(csr.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(NOW - renewal.dt.timedelta(hours=1))
                   .not_valid_after(NOW + renewal.dt.timedelta(days=300)))
        for ext in csr.extensions:
            builder = builder.add_extension(ext.value, ext.critical)
        cert = builder.sign(signer.key, signer.hash_algorithm())
        path.with_suffix(".crt").write_bytes(issuing.cert_to_pem(cert))


def test_library_objects(scanner: Scanner, trees: dict[str, Path], tmp_path: Path) -> None:
    """str, repr, HTML, JSON and to_dict of every result object: no key material."""
    root = copy_tree(trees["ecdsa"], tmp_path / "n")
    scanner.learn(root)
    node = kubepki.Node(root)
    scanner.add("node", node)
    scanner.add("profile", node.profile)
    inv = kubepki.inspect(root, now=NOW)
    scanner.add("inventory", inv)
    scanner.add_all("item", inv)
    scanner.add_all("finding", [f for _, f in inv.findings])
    plan = kubepki.plan_renewal(root, "all", now=NOW)
    scanner.add("plan", plan)
    scanner.add_all("step", plan.steps)
    info = kubepki.backup(root, tmp_path / "b", now=NOW)
    scanner.add("backup", info)
    scanner.add("verify", kubepki.verify_backup(info.path))
    result = kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True)
    scanner.add("renewal", result)
    scanner.learn(root)
    restore_plan = kubepki.plan_restore(info.path, root)
    scanner.add("restore plan", restore_plan)
    scanner.add_all("restore step", restore_plan.steps)
    scanner.add("restore", kubepki.apply_restore(restore_plan, accept_changed=True, take_backup=False))
    for conf in sorted((root / "etc/kubernetes").glob("*.conf")):
        kc = parse_kubeconfig(conf.read_bytes(), path=f"/etc/kubernetes/{conf.name}")
        scanner.add(f"kubeconfig {conf.name}", kc)
        scanner.add(f"credential {conf.name}", kc.client_key)
    key_pem = (root / PKI / "ca.key").read_bytes()
    scanner.add_all("pem block", pki.split_pem(key_pem))
    ca = pki.load_certificate((root / PKI / "ca.crt").read_bytes())
    scanner.add("signer", issuing.Signer.from_key("ca", ca, pki.load_private_key(key_pem)))
    scanner.add("key pool", kubepki.testing.key_pool("ECDSA-P256"))
    scanner.add("restarts", kubepki.plan_restarts(root, kubepki.Changed(["apiserver"])))
    scanner.check()


def test_cluster_objects_probe_and_served(scanner: Scanner, trees: dict[str, Path], tmp_path: Path) -> None:
    """kubectl output with the nodes' keys in Secrets, and a TLS server holding one: only facts come out."""
    root = trees["rsa"]
    scanner.learn(root)
    crt, key = (root / PKI / "apiserver.crt").read_bytes(), (root / PKI / "apiserver.key").read_bytes()
    ca = (root / PKI / "ca.crt").read_bytes()
    items = [tls_secret("serving", crt + ca, key, ca), secret("mismatch", {"tls.crt": crt, "tls.key":
             (root / PKI / "front-proxy-client.key").read_bytes()}, type_="kubernetes.io/tls"),
             secret("damaged", {"tls.key": key[: len(key) // 2], "key.pem": key + b"junk"})]
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(kubectl_list(items)))
    inv = kubepki.check_objects(objects, now=NOW)
    scanner.add("objects", inv)
    scanner.add_all("object item", inv.items)
    for output in ("table", "json"):
        cli(scanner, ["secrets", "check", "-f", str(objects), "--now", NOW_ARG, "-o", output])
        cli(scanner, ["metrics", "--root", str(root), "--objects", str(objects)])
    server = TLSServer(tmp_path, {"": (crt + ca, key)})
    try:
        endpoint = f"127.0.0.1:{server.port}"
        scanner.add("probe", probe.probe([endpoint], now=NOW, server_name="kubernetes"))
        for output in ("table", "json"):
            cli(scanner, ["probe", endpoint, "--server-name", "kubernetes", "--now", NOW_ARG, "-o", output])
            cli(scanner, ["verify-served", "--root", str(root), "--port", f"kube-apiserver={server.port}",
                          "-o", output])
    finally:
        server.close()
    scanner.check()


def _damaged_keys(root: Path) -> Iterator[bytes]:
    """Private keys and kubeconfigs embedding them, damaged in the ways the hostile corpora damage them."""
    for path in sorted((root / PKI).glob("*.key")):
        data = path.read_bytes()
        n = len(data)
        yield data[: n // 2]
        yield data[:40] + b"!" + data[41:]
        yield data.replace(b"PRIVATE KEY", b"CERTIFICATE", 1)
        yield data.replace(b"-----\n", b"-----\nProc-Type: 4,ENCRYPTED\n", 1)
    for path in sorted((root / "etc/kubernetes").glob("*.conf")):
        data = path.read_bytes()
        m = re.search(rb"client-key-data: (\S+)", data)
        if m is None:
            continue
        start = m.start(1)
        pem = base64.b64decode(m.group(1))
        span = _secret_span(pem, pki.load_private_key(pem))
        assert span is not None
        secret = start + (span[0] + span[1]) * 2 // 3  # the middle of the secret, in the base64 value
        yield data[: start + 30] + b": x: y" + data[start + 30:]  # a YAML error on the key's line
        yield data[:secret] + b": x: y" + data[secret:]  # ...in the middle of its secret
        yield data[:secret] + b"\t#" + data[secret:]
        yield data[: start + 30] + b"\t" + data[start + 30:]
        yield data[: start] + b'"' + data[start:]  # an unterminated quote
        yield data[: start + 10] + b"!" + data[start + 11:]  # a base64 error
        yield data.replace(b"client-key-data: ", b"client-key-data: [", 1)


@pytest.mark.parametrize("loader", ["libyaml", "pure-python"])
def test_error_messages(scanner: Scanner, trees: dict[str, Path], tmp_path: Path, loader: str) -> None:
    """Errors about damaged keys and kubeconfigs name the problem, never the key (with either YAML loader).

    RSA keys: their secret spans most of the PEM, so an error quoting any of it is caught.
    """
    root = copy_tree(trees["rsa"], tmp_path / "n")
    scanner.learn(root)
    with pytest.MonkeyPatch.context() as mp:
        if loader == "pure-python":
            mp.setattr(yamlutil, "_Loader", yaml.SafeLoader)
        for i, data in enumerate(_damaged_keys(root)):
            for parse in (pki.load_private_key, pki.load_certificate, pki.load_public_key,
                          lambda d: parse_kubeconfig(d, path="/etc/kubernetes/admin.conf")):
                try:
                    parse(data)
                except KubepkiError as exc:
                    scanner.add(f"error {i}", exc)
            (root / "etc/kubernetes/admin.conf").write_bytes(data)
            inv = kubepki.inspect(root, now=NOW)
            scanner.add(f"inventory {i}", inv)
            cli(scanner, ["check", "--root", str(root), "--now", NOW_ARG, "-o", "json"])
    scanner.check()


def test_the_scanner_finds_a_planted_key(trees: dict[str, Path]) -> None:
    """Negative control: a key, a fragment of it, of its embedded form, its secret number, a header: each found."""
    root = trees["ecdsa"]
    key_pem = (root / PKI / "apiserver.key").read_bytes()
    key = pki.load_private_key(key_pem)
    span = _secret_span(key_pem, key)
    assert span is not None
    secret_chars = "".join(chr(c) for c in key_pem[span[0]:span[1]] if c in _B64)
    found = re.search(rb"client-key-data: (\S+)", (root / "etc/kubernetes/admin.conf").read_bytes())
    assert found is not None
    embedded = found.group(1).decode()
    pem = base64.b64decode(embedded)
    inner = _secret_span(pem, pki.load_private_key(pem))
    assert inner is not None
    fragment = embedded[inner[0] * 4 // 3 + 4:inner[0] * 4 // 3 + 30]
    for leaked in (key_pem.decode(), f"oops {secret_chars[3:30]} oops", f"data: ...{fragment}...",
                   str(_secret_ints(key)[0]), "-----BEGIN EC PRIVATE KEY-----"):
        scan = Scanner()
        scan.learn(root)
        scan.add("leak", leaked)
        assert scan.findings(), leaked
    clean = Scanner()
    clean.learn(root)
    clean.add("facts", kubepki.inspect(root, now=NOW))
    clean.add("public halves", (root / PKI / "apiserver.crt").read_text() + (root / PKI / "sa.pub").read_text())
    assert clean.findings() == []
