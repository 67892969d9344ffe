"""A stand-in for a control-plane binary that is not installed here (kube-apiserver...).

tests/services.py runs it through a symlink named after the component, so its
argv[0] and comm are ``kube-apiserver`` (or ``kubelet``...) as for the real one.
It reads the component's flags and, when ``--tls-cert-file`` and
``--tls-private-key-file`` are given, serves that certificate with TLS on
``--bind-address`` (default 127.0.0.1) and ``--secure-port`` (``--port`` for the
kubelet). The files are read once, at start: like a component that needs a
restart to use a renewed certificate. ``--kubepki-test-serve=CERT,KEY`` serves
those files instead, whatever the other flags say: a component that keeps its
old certificate even across restarts (a negative control). Without a
certificate it just runs. SIGTERM ends it. Standard library only.
"""

from __future__ import annotations

import signal
import socket
import ssl
import sys
import threading


def _flags(argv: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            out[name] = value
    return out


def main(argv: list[str]) -> int:
    """Run until SIGTERM."""
    flags = _flags(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cert, key = flags.get("tls-cert-file"), flags.get("tls-private-key-file")
    if flags.get("kubepki-test-serve"):
        cert, key = flags["kubepki-test-serve"].split(",", 1)
    port = flags.get("secure-port") or flags.get("port")
    if not (cert and key and port):
        while not stop.wait(0.2):
            pass
        return 0
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)  # once: a renewed file needs a restart
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((flags.get("bind-address") or "127.0.0.1", int(port)))
        srv.listen(16)
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.settimeout(2.0)
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass  # the handshake is all a certificate check needs
            except OSError:
                pass
            finally:
                conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
