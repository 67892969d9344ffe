"""A minimal, read-only Kubernetes API client, and :func:`check_live` on top of it.

Only the standard library talks to the API server (``http.client`` over ``ssl``);
nothing shells out to kubectl. The client lists, with ``limit``/``continue``
paging, the resources whose certificates kubepki checks (:data:`RESOURCES`), and
decodes each page as a stream, one object at a time (see
:mod:`kubepki.objects._objects`).

Authentication follows the kubeconfig as kubectl does, for this subset:

- the context: ``context=`` or ``current-context``; ``$KUBECONFIG`` (several files
  merged, the first one naming an entry winning) or ``~/.kube/config`` when no
  kubeconfig is given; relative file references resolve against the file that
  holds them;
- the server's CA: ``certificate-authority-data`` or ``certificate-authority``,
  else the system's trust store; ``tls-server-name``; ``insecure-skip-tls-verify``
  is honoured with an :class:`InsecureSkipTLSVerifyWarning` and a note;
- client certificates: ``client-certificate(-data)`` and ``client-key(-data)``.
  Python's ``ssl`` loads them only from a file, so embedded ones go through an
  anonymous in-memory file (``memfd_create``, Linux) that never touches a disk;
  where that is unavailable, a file created ``0600`` in a private ``0700``
  directory on ``/dev/shm`` (else the temporary directory), unlinked as soon as
  ``load_cert_chain`` returns;
- bearer tokens: ``token`` and ``tokenFile`` (which wins, as in client-go);
- exec plugins (``user.exec``): the command runs with its ``args`` and ``env`` and
  ``KUBERNETES_EXEC_INFO``, stdin closed (``interactiveMode: Always`` is refused),
  under a timeout; its ExecCredential's ``status.token`` or
  ``status.clientCertificateData``/``clientKeyData`` are used.

Not supported, with a clear error: ``auth-provider`` plugins (removed from kubectl),
basic auth (removed from Kubernetes 1.19), ``proxy-url``, impersonation; the
``HTTPS_PROXY`` environment is not consulted.

Tokens, keys and Secret values are never logged, put in a repr or in an error
message. Errors are :class:`APIError` (the API server could not be reached or
refused), :class:`~kubepki.KubeconfigError` (the kubeconfig is unusable) and
:class:`~kubepki.ConfigError` (bad arguments).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from kubepki._version import __version__
from kubepki.errors import APIError, ConfigError, KubeconfigError
from kubepki.objects._bundles import DEFAULT_WARN_WITHIN
from kubepki.objects._objects import ObjectInventory, check_object_iter, iter_objects
from kubepki.pki import kubeconfig_data

__all__ = [
    "RESOURCES",
    "APIError",
    "InsecureSkipTLSVerifyWarning",
    "KubeClient",
    "Resource",
    "check_live",
]


class InsecureSkipTLSVerifyWarning(UserWarning):
    """The kubeconfig says ``insecure-skip-tls-verify``: the server's identity is not checked."""


@attrs.frozen
class Resource:
    """A resource kubepki lists: its kind, API path prefix, plural and scope."""

    kind: str
    prefix: str
    plural: str
    namespaced: bool
    #: False for resources a namespace-bound user may not list; a 403 then skips them with a note.
    required: bool = True

    def path(self, namespace: str | None = None) -> str:
        """The list path (``/api/v1/namespaces/NS/secrets``)."""
        if namespace is not None and self.namespaced:
            return f"{self.prefix}/namespaces/{urllib.parse.quote(namespace, safe='')}/{self.plural}"
        return f"{self.prefix}/{self.plural}"


#: What :func:`check_live` lists. CustomResourceDefinitions are left out: their lists
#: are large (whole schemas) for one field; check them offline from kubectl output.
RESOURCES: tuple[Resource, ...] = (
    Resource("Secret", "/api/v1", "secrets", True),
    Resource("ConfigMap", "/api/v1", "configmaps", True),
    Resource("MutatingWebhookConfiguration", "/apis/admissionregistration.k8s.io/v1",
             "mutatingwebhookconfigurations", False, required=False),
    Resource("ValidatingWebhookConfiguration", "/apis/admissionregistration.k8s.io/v1",
             "validatingwebhookconfigurations", False, required=False),
    Resource("APIService", "/apis/apiregistration.k8s.io/v1", "apiservices", False, required=False),
)

_EXEC_API = "client.authentication.k8s.io/v1"
_MAX_ERROR_BODY = 64 << 10
_MAX_OBJECT_BODY = 4 << 20  # one object (a CSR with its certificate is a few KiB)


# --------------------------------------------------------------------------------------
# Kubeconfig


@attrs.frozen(kw_only=True)
class _Entry:
    value: Mapping[str, Any]
    base: Path


def _kubeconfig_paths(kubeconfig: str | os.PathLike[str] | None) -> list[Path]:
    if kubeconfig is not None:
        return [Path(kubeconfig)]
    env = os.environ.get("KUBECONFIG", "")
    paths = [Path(p) for p in env.split(os.pathsep) if p]
    if paths:
        return paths
    return [Path.home() / ".kube" / "config"]


def _load_kubeconfigs(paths: Sequence[Path]) -> tuple[dict[str, dict[str, _Entry]], str | None, str]:  # noqa: C901, PLR0912  -- kubectl's merge rules, one per field
    """Merged named entries (first file wins, as kubectl merges), current-context, and what was read."""
    from kubepki.pki import load_one

    merged: dict[str, dict[str, _Entry]] = {"clusters": {}, "users": {}, "contexts": {}}
    current: str | None = None
    read: list[str] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if len(paths) > 1:
                continue  # kubectl skips missing files of $KUBECONFIG
            raise ConfigError(f"kubeconfig {path} does not exist", path=str(path)) from None
        except OSError as exc:
            raise ConfigError(f"cannot read kubeconfig {path}: {exc.strerror or exc}", path=str(path)) from None
        read.append(str(path))
        doc = load_one(data, path=str(path), error=KubeconfigError)
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise KubeconfigError("not a kubeconfig (no mapping at the top)", path=str(path))
        if current is None and isinstance(doc.get("current-context"), str) and doc["current-context"]:
            current = doc["current-context"]
        for section, field in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            entries = doc.get(section) or []
            if not isinstance(entries, list):
                raise KubeconfigError(f"{section} is not a list", path=str(path))
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    continue
                value = entry.get(field) or {}
                if not isinstance(value, dict):
                    raise KubeconfigError(f"{section[:-1]} {entry['name']!r} is not a mapping", path=str(path))
                merged[section].setdefault(entry["name"], _Entry(value=value, base=path.parent))
    if not read:
        raise ConfigError(f"no kubeconfig found (looked for {', '.join(str(p) for p in paths)})")
    return merged, current, os.pathsep.join(read)


def _file(entry: _Entry, field: str, path: str) -> Path | None:
    ref = entry.value.get(field)
    if ref in (None, ""):
        return None
    if not isinstance(ref, str):
        raise KubeconfigError(f"{field} is not a string", path=path)
    p = Path(os.path.expanduser(ref))
    return p if p.is_absolute() else entry.base / p


def _read(p: Path, what: str, path: str) -> bytes:
    try:
        return p.read_bytes()
    except OSError as exc:
        raise KubeconfigError(f"{what} file {p} cannot be read: {exc.strerror or exc}", path=path) from None


# --------------------------------------------------------------------------------------
# Credentials into ssl


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def load_client_pair(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load an in-memory client certificate and key into ``context`` without writing them to disk.

    Uses an anonymous ``memfd`` when the platform has one; otherwise a ``0600`` file
    in a fresh ``0700`` directory on ``/dev/shm`` (tmpfs; else the temporary
    directory), unlinked as soon as ``load_cert_chain`` returns. Raises
    :class:`~kubepki.KubeconfigError` when they cannot be loaded (not PEM, or not
    one pair), without any of their bytes in the message.
    """
    blob = cert_pem.rstrip(b"\n") + b"\n" + key_pem
    try:
        memfd = getattr(os, "memfd_create", None)
        if memfd is not None and os.path.isdir("/proc/self/fd"):
            fd = memfd("kubepki-client-credential", getattr(os, "MFD_CLOEXEC", 0))
            try:
                _write_all(fd, blob)
                context.load_cert_chain(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
            return
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - tmpfs, a private 0700 dir
        private = tempfile.mkdtemp(prefix="kubepki-", dir=shm)
        path = os.path.join(private, "credential.pem")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, blob)
            finally:
                os.close(fd)
            context.load_cert_chain(path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.rmdir(private)
    except ssl.SSLError as exc:
        raise KubeconfigError(f"the client certificate and key cannot be loaded ({_ssl_reason(exc)}): "
                              "not PEM, or the key does not belong to the certificate") from None
    finally:
        del blob


def _ssl_reason(exc: ssl.SSLError) -> str:
    if exc.reason:
        return str(exc.reason)
    return str(exc.args[-1]) if exc.args else "ssl error"


# --------------------------------------------------------------------------------------
# Exec plugins


@attrs.frozen
class _ExecResult:
    token: str | None = attrs.field(default=None, repr=False)
    cert: bytes | None = attrs.field(default=None, repr=False)
    key: bytes | None = attrs.field(default=None, repr=False)


def _run_exec(spec: Mapping[str, Any], base: Path, cluster: Mapping[str, Any], kubeconfig: str,  # noqa: C901, PLR0912  -- the exec credential plugin protocol, step by step
              timeout: float) -> _ExecResult:
    command = spec.get("command")
    if not isinstance(command, str) or not command:
        raise KubeconfigError("exec plugin without a command", path=kubeconfig)
    args = spec.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise KubeconfigError("exec args must be a list of strings", path=kubeconfig)
    if spec.get("interactiveMode") == "Always":
        raise KubeconfigError(f"exec plugin {command!r} needs a terminal (interactiveMode: Always); "
                              "kubepki runs plugins without one", path=kubeconfig)
    env = dict(os.environ)
    for item in spec.get("env") or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            env[item["name"]] = str(item.get("value", ""))
    api_version = spec.get("apiVersion") if isinstance(spec.get("apiVersion"), str) else _EXEC_API
    info: dict[str, Any] = {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    if spec.get("provideClusterInfo"):
        info["spec"]["cluster"] = {
            k: cluster[k] for k in ("server", "certificate-authority-data", "tls-server-name",
                                    "insecure-skip-tls-verify") if k in cluster
        }
        config = (cluster.get("extensions") or {}) if isinstance(cluster.get("extensions"), dict) else {}
        if "client.authentication.k8s.io/exec" in config:
            info["spec"]["cluster"]["config"] = config["client.authentication.k8s.io/exec"]
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    # kubectl resolves a command with a slash against the kubeconfig's directory.
    program = str(base / command) if os.sep in command and not os.path.isabs(command) else command
    hint = spec.get("installHint")
    try:
        proc = subprocess.run([program, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        extra = f"; {' '.join(str(hint).split())}" if hint else ""
        raise APIError(f"exec plugin {command!r} not found{extra}") from None
    except subprocess.TimeoutExpired:
        raise APIError(f"exec plugin {command!r} did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise APIError(f"exec plugin {command!r} cannot run: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        last = next((ln for ln in reversed(proc.stderr.decode("utf-8", "replace").splitlines()) if ln.strip()), "")
        why = f": {last.strip()[:200]}" if last else ""
        raise APIError(f"exec plugin {command!r} failed with exit status {proc.returncode}{why}")
    try:
        cred = json.loads(proc.stdout)
    except ValueError:
        raise APIError(f"exec plugin {command!r} did not print an ExecCredential (not JSON)") from None
    status = cred.get("status") if isinstance(cred, dict) else None
    if not isinstance(cred, dict) or cred.get("kind") != "ExecCredential" or not isinstance(status, dict):
        raise APIError(f"exec plugin {command!r} did not print an ExecCredential with a status")
    token = status.get("token")
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    if isinstance(token, str) and token:
        return _ExecResult(token=token)
    if isinstance(cert, str) and cert and isinstance(key, str) and key:
        return _ExecResult(cert=cert.encode(), key=key.encode())
    raise APIError(f"exec plugin {command!r} gave neither a token nor a client certificate and key")


# --------------------------------------------------------------------------------------
# The client


class _Connection(http.client.HTTPSConnection):
    """An HTTPS connection whose SNI and verified name may differ from the host (tls-server-name)."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext, timeout: float,
                 server_hostname: str | None) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._sni = server_hostname
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self._sni or self.host)
        except BaseException:
            sock.close()
            raise


class KubeClient:
    """Access to one API server, authenticated as a kubeconfig says.

    Build it with :meth:`from_kubeconfig`; use it as a context manager (or call
    :meth:`close`). :meth:`list` yields the objects of one resource, page by page;
    :meth:`put_json` is the one write (approving a CSR).
    """

    def __init__(
        self,
        server: str,
        *,
        context: ssl.SSLContext,
        token: str | None = None,
        tls_server_name: str | None = None,
        timeout: float = 30.0,
        auth: str = "none",
        notes: Sequence[str] = (),
    ) -> None:
        parts = urllib.parse.urlsplit(server)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(f"server {server!r} is not an https:// URL (kubepki never sends credentials "
                              "in clear text)")
        self.server = server.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or 443
        self._prefix = parts.path.rstrip("/")
        self._context = context
        self._token = token
        self._sni = tls_server_name
        self._timeout = timeout
        self._conn: _Connection | None = None
        #: How the client authenticates: ``client-certificate``, ``token``, ``exec``... (never the secret).
        self.auth = auth
        #: Things worth knowing (``insecure-skip-tls-verify``...).
        self.notes: list[str] = list(notes)

    def __repr__(self) -> str:
        return f"<KubeClient server={self.server!r} auth={self.auth!r}>"

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection, if one is open."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @classmethod
    def from_kubeconfig(
        cls,
        kubeconfig: str | os.PathLike[str] | None = None,
        *,
        context: str | None = None,
        timeout: float = 30.0,
        exec_timeout: float = 60.0,
    ) -> KubeClient:
        """A client for ``context`` (default: the current context) of ``kubeconfig``.

        ``kubeconfig`` None means ``$KUBECONFIG`` or ``~/.kube/config``. Exec plugins
        run here, once. Raises :class:`~kubepki.ConfigError`,
        :class:`~kubepki.KubeconfigError` or :class:`APIError` (an exec plugin failed).
        """
        merged, current, shown = _load_kubeconfigs(_kubeconfig_paths(kubeconfig))
        name = context or current
        if not name:
            raise KubeconfigError("the kubeconfig has no current-context; pass a context", path=shown)
        ctx = merged["contexts"].get(name)
        if ctx is None:
            raise KubeconfigError(f"context {name!r} not found", path=shown)
        cluster = merged["clusters"].get(str(ctx.value.get("cluster")))
        if cluster is None:
            raise KubeconfigError(f"cluster {ctx.value.get('cluster')!r} of context {name!r} not found", path=shown)
        user = merged["users"].get(str(ctx.value.get("user")))
        if user is None and ctx.value.get("user"):
            raise KubeconfigError(f"user {ctx.value.get('user')!r} of context {name!r} not found", path=shown)
        server = cluster.value.get("server")
        if not isinstance(server, str) or not server:
            raise KubeconfigError(f"cluster {ctx.value.get('cluster')!r} has no server", path=shown)
        if cluster.value.get("proxy-url"):
            raise KubeconfigError("proxy-url is not supported", path=shown)
        tls, notes = _server_context(cluster, shown)
        token, auth = _user_credentials(tls, user, cluster, shown, exec_timeout)
        sni = cluster.value.get("tls-server-name")
        return cls(server, context=tls, token=token, timeout=timeout, auth=auth, notes=notes,
                   tls_server_name=sni if isinstance(sni, str) and sni else None)

    @classmethod
    def in_cluster(cls, *, timeout: float = 30.0,
                   account: str | os.PathLike[str] = "/var/run/secrets/kubernetes.io/serviceaccount") -> KubeClient:
        """A client with the pod's service account, as client-go's ``rest.InClusterConfig`` builds it:
        ``$KUBERNETES_SERVICE_HOST``/``_PORT``, the account's ``token`` and ``ca.crt``.
        Raises :class:`~kubepki.ConfigError` outside a pod (no such variables or files)."""
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise ConfigError("not in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
        where = Path(account)
        try:
            token = (where / "token").read_text().strip()
            tls = ssl.create_default_context(cafile=str(where / "ca.crt"))
        except OSError as exc:
            raise ConfigError(f"no service account at {where}: {exc.strerror or exc}") from None
        shown = f"[{host}]" if ":" in host else host
        return cls(f"https://{shown}:{port}", context=tls, token=token, timeout=timeout, auth="service-account")

    # -- requests ----------------------------------------------------------------------

    def _connection(self) -> _Connection:
        if self._conn is None:
            self._conn = _Connection(self._host, self._port, context=self._context, timeout=self._timeout,
                                     server_hostname=self._sni)
        return self._conn

    def get(self, path: str, query: Mapping[str, str] | None = None) -> http.client.HTTPResponse:
        """GET ``path``; the response (status 200) to read. Raises :class:`APIError` otherwise."""
        return self._request("GET", path, query=query)

    def get_json(self, path: str) -> dict[str, Any]:
        """GET one object at ``path``, decoded. Raises :class:`APIError` for any status but 200 (404...)."""
        return self._object(self._request("GET", path), "GET", path)

    def put_json(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT ``body`` as JSON to ``path`` (an update of one object, e.g. a CSR's ``/approval``); the
        object the server answers with. Raises :class:`APIError` for any status but 200 (409: the
        object changed since it was read)."""
        return self._object(self._request("PUT", path, body=json.dumps(body).encode()), "PUT", path)

    def post_json(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON to ``path`` (a create, e.g. an Event); the object the server answers with.
        Raises :class:`APIError` for any status but 200 and 201."""
        return self._object(self._request("POST", path, body=json.dumps(body).encode(), ok=(200, 201)), "POST", path)

    def _object(self, response: http.client.HTTPResponse, method: str, path: str) -> dict[str, Any]:
        try:
            data = response.read(_MAX_OBJECT_BODY + 1)
        finally:
            response.close()
        if len(data) > _MAX_OBJECT_BODY:
            self.close()
            raise APIError(f"{self.server} answered {method} {path} with more than {_MAX_OBJECT_BODY} bytes",
                           url=path)
        try:
            obj = json.loads(data)
        except ValueError:
            raise APIError(f"{self.server} answered {method} {path} with no JSON object", url=path) from None
        if not isinstance(obj, dict):
            raise APIError(f"{self.server} answered {method} {path} with no JSON object", url=path)
        return obj

    def _request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                 body: bytes | None = None, ok: tuple[int, ...] = (200,)) -> http.client.HTTPResponse:
        url = self._prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Accept": "application/json", "User-Agent": f"kubepki/{__version__}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        for attempt in range(4):
            reused = self._conn is not None
            conn = self._connection()
            try:
                conn.request(method, url, body=body, headers=headers)
                response = conn.getresponse()
            except ssl.SSLCertVerificationError as exc:
                self.close()
                raise APIError(f"TLS verification of {self.server} failed: {exc.verify_message or exc.reason}",
                               url=path) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection
                raise APIError(f"cannot reach {self.server}: {_os_reason(exc)}", url=path) from None
            if response.status in ok:
                return response
            answer = response.read(_MAX_ERROR_BODY)  # not ``body``: a retry sends the request's body again
            response.close()
            if response.status in (429, 503) and attempt < 3:
                time.sleep(_retry_after(response.getheader("Retry-After")))
                continue
            raise APIError(_status_message(response.status, answer, self.server, path), status=response.status,
                           url=path)
        raise APIError(f"{self.server} kept answering 429/503 to {path}", url=path)  # pragma: no cover

    def list(self, resource: Resource, *, namespace: str | None = None, page_size: int = 500,
             field_selector: str | None = None) -> Iterator[dict[str, Any]]:
        """Every object of ``resource`` (in ``namespace`` if namespaced and given, matching
        ``field_selector`` if given: ``metadata.name=kube-root-ca.crt``), page by page.

        Each object gets its ``kind`` (list items lack it). Each page is decoded as a
        stream; only one object is held at a time.
        """
        if page_size < 1:
            raise ConfigError("page_size must be at least 1")
        token: str | None = None
        while True:
            query = {"limit": str(page_size)}
            if field_selector:
                query["fieldSelector"] = field_selector
            if token:
                query["continue"] = token
            response = self.get(resource.path(namespace), query)
            fields: dict[str, Any] = {}
            drained = False
            try:
                for obj, _ in iter_objects(response, list_fields=fields):
                    obj["kind"] = resource.kind
                    yield obj
                response.read()  # drain, so the connection can be reused
                drained = True
            except (OSError, http.client.HTTPException) as exc:
                raise APIError(f"reading {resource.plural} from {self.server} failed: {_os_reason(exc)}",
                               url=resource.path(namespace)) from None
            finally:
                response.close()
                if not drained:
                    self.close()  # unread bytes would be taken for the next response
            meta = fields.get("metadata")
            following = meta.get("continue") if isinstance(meta, dict) else None
            if not isinstance(following, str) or not following:
                return
            if following == token:  # a server that never gets further would be listed forever
                raise APIError(f"{self.server} answered the same continue token twice when listing "
                               f"{resource.plural}", url=resource.path(namespace))
            token = following


def _server_context(cluster: _Entry, shown: str) -> tuple[ssl.SSLContext, list[str]]:
    notes: list[str] = []
    ca_data = cluster.value.get("certificate-authority-data")
    ca_file = _file(cluster, "certificate-authority", shown)
    insecure = cluster.value.get("insecure-skip-tls-verify") is True
    if insecure and (ca_data or ca_file):
        # As kubectl: "specifying a root certificates file with the insecure flag is not allowed".
        raise KubeconfigError("the cluster sets both a certificate authority and insecure-skip-tls-verify",
                              path=shown)
    tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if insecure:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        message = "insecure-skip-tls-verify: the API server's certificate is not verified"
        warnings.warn(message, InsecureSkipTLSVerifyWarning, stacklevel=3)
        notes.append(message)
        return tls, notes
    try:
        if ca_data:
            ca_pem = kubeconfig_data(ca_data, "certificate-authority-data", shown).decode("ascii")
            tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem)
        elif ca_file is not None:
            tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cadata=_read(ca_file, "certificate-authority", shown).decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise KubeconfigError("the cluster's certificate authority is not PEM certificates", path=shown) from None
    return tls, notes


def _user_credentials(tls: ssl.SSLContext, user: _Entry | None, cluster: _Entry, shown: str,  # noqa: C901, PLR0912  -- one case per kubeconfig credential kind
                      exec_timeout: float) -> tuple[str | None, str]:
    if user is None:
        return None, "none"
    u = user.value
    if u.get("auth-provider"):
        raise KubeconfigError("auth-provider plugins are not supported (kubectl removed them; use an exec "
                              "plugin)", path=shown)
    if u.get("username") or u.get("password"):
        raise KubeconfigError("basic authentication is not supported (removed from Kubernetes 1.19)", path=shown)
    if u.get("as") or u.get("as-groups"):
        raise KubeconfigError("impersonation (as, as-groups) is not supported", path=shown)
    methods: list[str] = []
    cert_data, key_data = u.get("client-certificate-data"), u.get("client-key-data")
    cert_file, key_file = _file(user, "client-certificate", shown), _file(user, "client-key", shown)
    if (cert_data or cert_file) and (key_data or key_file):
        if cert_file is not None and key_file is not None and not cert_data and not key_data:
            try:
                tls.load_cert_chain(str(cert_file), str(key_file))
            except FileNotFoundError as exc:
                raise KubeconfigError(f"client certificate or key file {exc.filename} does not exist",
                                      path=shown) from None
            except ssl.SSLError as exc:
                raise KubeconfigError(f"the client certificate and key cannot be loaded ({_ssl_reason(exc)})",
                                      path=shown) from None
        else:
            # Mixed (one embedded, one a file) or both embedded: hand both over from memory.
            cert = _data_or_file(cert_data, cert_file, "client-certificate", shown)
            key = _data_or_file(key_data, key_file, "client-key", shown)
            load_client_pair(tls, cert, key)
            del key
        methods.append("client-certificate")
    elif cert_data or cert_file or key_data or key_file:
        raise KubeconfigError("the user has a client certificate without its key, or a key without its "
                              "certificate", path=shown)
    token: str | None = None
    token_file = _file(user, "tokenFile", shown)
    if token_file is not None:
        token = _read(token_file, "tokenFile", shown).decode("utf-8", "replace").strip()
        methods.append("token")
    elif isinstance(u.get("token"), str) and u["token"]:
        token = u["token"]
        methods.append("token")
    spec = u.get("exec")
    if isinstance(spec, dict):
        result = _run_exec(spec, user.base, cluster.value, shown, exec_timeout)
        if result.token:
            token = result.token
        elif result.cert is not None and result.key is not None:
            load_client_pair(tls, result.cert, result.key)
        methods.append("exec")
    return token, "+".join(methods) or "none"


def _data_or_file(data: Any, file: Path | None, field: str, shown: str) -> bytes:
    if data:
        return kubeconfig_data(data, f"{field}-data", shown)
    if file is None:  # the caller checked that one of the two is there
        raise KubeconfigError(f"{field} is missing", path=shown)
    return _read(file, field, shown)


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 1), 0.0), 5.0)
    except ValueError:
        return 1.0


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({_ssl_reason(exc)})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _status_message(status: int, body: bytes, server: str, path: str) -> str:
    detail = ""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            detail = doc["message"][:300]
    except (ValueError, RecursionError):  # not JSON, or nested too deep to decode
        pass
    if status == 401:
        what = "401 Unauthorized: the credentials were rejected"
    elif status == 403:
        what = "403 Forbidden"
    elif status == 410:
        what = "410 Gone: the list changed too much while paging; run again"
    else:
        what = f"HTTP {status}"
    return f"{server}{path}: {what}" + (f" ({detail})" if detail else "")


def check_live(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    namespace: str | None = None,
    now: dt.datetime | None = None,
    warn_within: dt.timedelta = DEFAULT_WARN_WITHIN,
    page_size: int = 500,
    timeout: float = 30.0,
    resources: Iterable[Resource] = RESOURCES,
) -> ObjectInventory:
    """Check the certificates of a running cluster's Secrets, ConfigMaps, webhooks and APIServices.

    Authenticates as ``kubeconfig`` says (see the module docs), lists each of
    ``resources`` with ``limit=page_size`` paging and checks each object as
    :func:`kubepki.check_objects` does. With ``namespace``, only that namespace's
    Secrets and ConfigMaps are listed (no cluster-scoped objects). Webhook
    configurations and APIServices the user may not list are skipped with a note.
    Raises :class:`APIError`, :class:`~kubepki.KubeconfigError` or
    :class:`~kubepki.ConfigError`.
    """
    with KubeClient.from_kubeconfig(kubeconfig, context=context, timeout=timeout) as client:
        notes = list(client.notes)

        def objects() -> Iterator[dict[str, Any]]:
            for resource in resources:
                if namespace is not None and not resource.namespaced:
                    continue
                try:
                    yield from client.list(resource, namespace=namespace, page_size=page_size)
                except APIError as exc:
                    if resource.required or exc.status not in (403, 404):
                        raise
                    notes.append(f"{resource.plural} skipped: {exc.message}")

        return check_object_iter(objects(), source=client.server, now=now, warn_within=warn_within,
                                 namespace=namespace, notes=notes)

