"""Probing TLS endpoints: fetch the chain a server presents and check it like a file.

``kubepki probe ingress.example.com:443`` answers "is my ingress certificate
about to expire" in one line. The handshake verifies nothing (kubepki inspects
what is served, it does not trust it), sends SNI for host names (or for
``server_name``), and the served chain is checked as
:func:`kubepki.objects._bundles.check_chain` checks a ``tls.crt``: expiry of every
certificate, order, signatures, plus ``hostname-mismatch`` when the leaf does not
cover the name sent, or, for an IP address (which is never sent as SNI), that
address among its IP SANs.

The chain is fetched by :func:`kubepki.pki.fetch_tls_chain`; where this Python
cannot read the whole served chain, only the leaf is checked and the inventory
says so in its notes.

>>> from kubepki.objects.probe import parse_endpoint
>>> parse_endpoint("[::1]:8443"), parse_endpoint("example.com")
(('::1', 8443), ('example.com', 443))
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from cryptography import x509

from kubepki._clock import utc as _utc
from kubepki.errors import ConfigError
from kubepki.inspection import Finding
from kubepki.objects._bundles import DEFAULT_WARN_WITHIN, BundleCheck, check_chain, make
from kubepki.objects._objects import ObjectInventory, ObjectItem, ObjectItemKind, object_item
from kubepki.pki import CERT_PARSE_ERRORS, CertFacts, TLSChain, fetch_tls_chain, is_ip

__all__ = ["ServedChain", "fetch_chain", "parse_endpoint", "probe"]

_LEAF_ONLY_NOTE = ("this Python cannot read the whole served chain (Python 3.13's get_unverified_chain is "
                   "missing): only leaf certificates were checked")


def parse_endpoint(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``host`` (port 443) or ``https://host[:port][/...]`` as (host, port).

    Raises :class:`~kubepki.ConfigError` for anything else.
    """
    value = text.strip()
    if "://" in value:
        scheme, _, value = value.partition("://")
        if scheme.lower() != "https":
            raise ConfigError(f"endpoint {text!r}: only https:// URLs can be probed")
        value = value.split("/", 1)[0]
    host, port_text = value, ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ConfigError(f"endpoint {text!r}: unterminated [IPv6 address]")
        host, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"endpoint {text!r} is not HOST:PORT")
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif value.count(":") > 1:
        raise ConfigError(f"endpoint {text!r}: write IPv6 addresses as [ADDRESS]:PORT")
    if not host:
        raise ConfigError(f"endpoint {text!r} has no host")
    try:
        port = int(port_text) if port_text else 443
    except ValueError:
        raise ConfigError(f"endpoint {text!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"endpoint {text!r}: port {port} is out of range")
    return host, port


#: What a server presented (the same value :func:`kubepki.pki.fetch_tls_chain` returns).
ServedChain = TLSChain


def fetch_chain(host: str, port: int, *, server_name: str | None = None, timeout: float = 5.0) -> ServedChain:
    """Connect, handshake without verification and return the served chain.

    SNI is ``server_name``, else ``host`` when it is a name (never an IP address).
    Raises :class:`OSError` (``ssl.SSLError`` included) when the endpoint cannot be
    reached or the handshake fails.
    """
    return fetch_tls_chain(host, port, server_name=server_name, timeout=timeout)


def _covers(facts: CertFacts, name: str) -> bool:
    if is_ip(name):
        return str(ipaddress.ip_address(name)) in {str(ipaddress.ip_address(i)) for i in facts.ip_addresses}
    wanted = name.rstrip(".").lower()
    for san in facts.dns_names:
        pattern = san.rstrip(".").lower()
        if pattern == wanted:
            return True
        # RFC 6125: a wildcard stands for exactly one whole left-most label.
        if pattern.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def _probe_one(endpoint: str, *, now: dt.datetime, warn_within: dt.timedelta, timeout: float,
               server_name: str | None) -> tuple[ObjectItem, bool]:
    host, port = parse_endpoint(endpoint)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sni = server_name or (None if is_ip(host) else host)
    expected = server_name or host  # an IP address is never sent as SNI, but checked against the IP SANs

    def item(check: BundleCheck | None, extra: Sequence[Finding]) -> ObjectItem:
        return object_item(namespace=None, object_kind="Endpoint", object=shown, key=sni or "",
                           kind=ObjectItemKind.CERTIFICATE, check=check, extra=extra, now=now)

    try:
        served = fetch_chain(host, port, server_name=server_name, timeout=timeout)
    except (OSError, ssl.SSLError) as exc:
        return item(None, [make("unreachable", f"{shown}: {_reason(exc)}")]), True
    if not served.certificates:
        return item(None, [make("no-certificate", f"{shown} presented no certificate")]), served.complete
    try:
        certs = [x509.load_der_x509_certificate(d) for d in served.certificates]
        for cert in certs:  # parsed lazily: malformed names or extensions fail here, not later
            cert.subject, cert.issuer, cert.extensions, cert.not_valid_after_utc  # noqa: B018
    except CERT_PARSE_ERRORS as exc:
        return item(None, [make("bad-certificate", f"{shown} presented an unparseable certificate: "
                                f"{str(exc)[:200]}")]), served.complete
    check = check_chain(certs, now=now, warn_within=warn_within, label=f"the chain of {shown}")
    extra: list[Finding] = []
    if check.facts is not None and not _covers(check.facts, expected):
        sans = ", ".join([*check.facts.dns_names, *check.facts.ip_addresses]) or "none"
        extra.append(make("hostname-mismatch", f"{shown} served a certificate for {sans}, not {expected}"))
    return item(check, extra), served.complete


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def probe(
    endpoints: Iterable[str],
    *,
    now: dt.datetime | None = None,
    timeout: float = 5.0,
    server_name: str | None = None,
    warn_within: dt.timedelta = DEFAULT_WARN_WITHIN,
) -> ObjectInventory:
    """Fetch and check the chain each endpoint serves; one item per endpoint, named ``host:port``.

    ``server_name`` is sent as SNI to every endpoint (default: each host name) and is
    what ``hostname-mismatch`` checks against. An endpoint that cannot be reached
    is an ``invalid`` item with an ``unreachable`` finding; only malformed
    endpoints raise (:class:`~kubepki.ConfigError`), before anything is contacted.
    Endpoints are probed concurrently, and reported in the order given.
    """
    listed = list(endpoints)
    for endpoint in listed:
        parse_endpoint(endpoint)
    when = _utc(now)

    def one(endpoint: str) -> tuple[ObjectItem, bool]:
        return _probe_one(endpoint, now=when, warn_within=warn_within, timeout=timeout, server_name=server_name)

    if len(listed) > 1:
        with ThreadPoolExecutor(max_workers=min(8, len(listed)), thread_name_prefix="kubepki-probe") as pool:
            results = list(pool.map(one, listed))
    else:
        results = [one(e) for e in listed]
    notes = () if all(complete for _, complete in results) else (_LEAF_ONLY_NOTE,)
    return ObjectInventory(now=when, source="probe", warn_within=warn_within,
                           items=tuple(item for item, _ in results),
                           objects={"Endpoint": len(listed)}, notes=notes)
