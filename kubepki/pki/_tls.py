"""The certificate chain a TLS server presents, fetched without trusting it.

kubepki inspects what is served; it never decides trust during the handshake.
So verification is off, SNI is sent for host names only (TLS forbids it for IP
addresses), and weak or legacy certificates are let through the handshake so
they can be reported afterwards.

The whole served chain needs ``SSLSocket.get_unverified_chain()`` (Python 3.13),
or the same method of the ``_ssl`` object underneath on Python 3.10 to 3.12
(private, so used only when present). Without either only the leaf is read, and
:attr:`TLSChain.complete` says so.
"""

from __future__ import annotations

import socket
import ssl

import attrs

from kubepki.pki._certs import is_ip

__all__ = ["TLSChain", "fetch_tls_chain"]


@attrs.frozen(kw_only=True)
class TLSChain:
    """What a server presented: its certificates (DER, leaf first) and how the handshake went."""

    certificates: tuple[bytes, ...] = attrs.field(repr=False)
    #: False when only the leaf could be read (see the module docs).
    complete: bool
    tls_version: str | None = None
    #: The SNI sent, None for an IP address.
    server_name: str | None = None

    @property
    def leaf(self) -> bytes | None:
        """The first certificate, None when the server presented none."""
        return self.certificates[0] if self.certificates else None


def _context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # inspect, never trust: callers judge what was served
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # Let weak or legacy certificates through the handshake so they can be reported.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    return ctx


def _chain_of(sock: ssl.SSLSocket) -> tuple[list[bytes], bool]:
    public = getattr(sock, "get_unverified_chain", None)
    if public is not None:  # Python 3.13
        chain = public()
        return [bytes(c) for c in chain or ()], True
    private = getattr(getattr(sock, "_sslobj", None), "get_unverified_chain", None)
    if private is not None:  # Python 3.10-3.12: the same call, not yet public
        try:
            chain = private() or []
            return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain], True  # type: ignore[attr-defined]
        except (AttributeError, TypeError, ValueError, ssl.SSLError):
            pass
    leaf = sock.getpeercert(binary_form=True)
    return ([leaf] if leaf else []), False


def fetch_tls_chain(host: str, port: int, *, server_name: str | None = None, timeout: float = 5.0) -> TLSChain:
    """Connect to ``host:port``, handshake without verification and return the served chain.

    SNI is ``server_name``, else ``host`` when it is a name (never an IP address).
    Raises :class:`OSError` (:class:`ssl.SSLError` and :class:`TimeoutError`
    included) when the endpoint cannot be reached or the handshake fails.
    """
    sni = server_name if server_name is not None else (None if is_ip(host.strip("[]")) else host)
    with socket.create_connection((host, port), timeout=timeout) as raw:
        raw.settimeout(timeout)
        with _context().wrap_socket(raw, server_hostname=sni) as tls:
            der, complete = _chain_of(tls)
            return TLSChain(certificates=tuple(der), complete=complete, tls_version=tls.version(),
                            server_name=sni)
