"""Exceptions raised by kubepki.

Every exception kubepki raises on purpose derives from :class:`KubepkiError` and
carries the context it is about (``path``, ``name``, ``node``) as attributes::

    KubepkiError
    ├── ConfigError (ValueError)         bad arguments, options or kubeadm config
    │   └── UnknownItemError (KeyError)  a catalog name that does not exist
    ├── NodeError (OSError)              a node's root or files cannot be reached
    │   ├── PathEscapeError              a path or symlink leads outside the node's root
    │   └── HostKeyError                 an SSH server's host key is unknown or has changed
    ├── ParseError (ValueError)          bytes that are not what they should be
    │   ├── PEMError                     certificates and keys (PEM/DER)
    │   ├── KubeconfigError              kubeconfig files
    │   └── ManifestError                static pod manifests
    ├── BackupError                      creating, verifying or restoring backups
    │   └── UnsafeArchiveError           an archive that would write outside the root
    ├── APIError                         the API server unreachable, refusing or unintelligible
    ├── RenewalError                     planning or applying a renewal
    │   ├── SignerError                  a CA that cannot or must not sign
    │   ├── LockError                    another kubepki is writing to the node
    │   ├── StalePlanError               a plan older than its maximum age
    │   └── InvalidTimeError             certificates not valid at the real time
    └── RestartError                     planning, executing or verifying restarts
                                         (the container runtime's CRI and Docker errors too)

Lower-layer errors (``OSError``, ``yaml.YAMLError``, ``cryptography`` errors) are
mapped onto these at kubepki's edges, so callers need only catch ``KubepkiError``;
:func:`os_reason` and :func:`node_error` are that mapping for ``OSError``.
Messages never contain private key material.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping
from pathlib import PurePath


class KubepkiError(Exception):
    """Base class of every error kubepki raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        path: str | PurePath | None = None,
        name: str | None = None,
        node: str | None = None,
    ) -> None:
        message = scrub(message)
        super().__init__(message)
        self.message = message
        #: The file the error is about, as seen on the node, if any.
        self.path = str(path) if path is not None else None
        #: The catalog name the error is about, if any.
        self.name = name
        #: The node the error is about, if any.
        self.node = node

    def __str__(self) -> str:
        return self.message


class ConfigError(KubepkiError, ValueError):
    """Invalid arguments, options or kubeadm configuration."""


class UnknownItemError(ConfigError, KeyError):
    """A catalog name that kubepki does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class NodeError(KubepkiError, OSError):
    """A node's root or one of its files cannot be reached."""


class PathEscapeError(NodeError):
    """A path or a symlink would lead outside the node's root."""


class ParseError(KubepkiError, ValueError):
    """Bytes that are not what they should be (certificate, key, YAML...).

    ``code`` is the finding code inspection reports for it (``not-pem``,
    ``truncated-pem``, ``wrong-pem-type``, ``bad-certificate``, ``bad-key``...).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "malformed",
        path: str | PurePath | None = None,
        name: str | None = None,
        node: str | None = None,
    ) -> None:
        super().__init__(message, path=path, name=name, node=node)
        self.code = code


class PEMError(ParseError):
    """A certificate or key that cannot be parsed."""


class KubeconfigError(ParseError):
    """A kubeconfig file that cannot be parsed or lacks required fields."""


class ManifestError(ParseError):
    """A static pod manifest that cannot be parsed."""


class BackupError(KubepkiError):
    """A backup that cannot be written, verified or restored."""


class UnsafeArchiveError(BackupError):
    """An archive member that would write outside the root or is not a plain file."""


class RenewalError(KubepkiError):
    """A renewal that cannot be planned or applied."""


class SignerError(RenewalError):
    """A CA that cannot sign (key absent or not matching) or must not sign."""


class LockError(RenewalError):
    """Another kubepki process holds the node's lock."""


class StalePlanError(RenewalError):
    """A plan whose time is further behind the real clock than its maximum age allows.

    Its certificates would start (NotBefore) that long ago and end that much sooner.
    """


class InvalidTimeError(RenewalError):
    """Certificates that would not be valid at the real time: expired, or not valid yet."""


class RestartError(KubepkiError):
    """A restart that cannot be planned, executed or verified."""


class HostKeyError(NodeError):
    """The server's host key is not in known_hosts, or differs from the one there.

    ``host`` and ``port`` say which server; ``fingerprint`` is the SHA-256
    fingerprint of the key the server offered, ``expected`` that of the key
    known_hosts holds (None when the server is unknown).
    """

    def __init__(self, message: str, *, host: str, port: int, fingerprint: str | None = None,
                 expected: str | None = None, node: str | None = None) -> None:
        super().__init__(message, node=node)
        self.host = host
        self.port = port
        self.fingerprint = fingerprint
        self.expected = expected


class APIError(KubepkiError):
    """The API server could not be reached, refused the request or sent something unusable.

    ``status`` is the HTTP status when there was one; ``url`` the request path
    (never with credentials).
    """

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


# --------------------------------------------------------------------------------------
# OSError -> message and typed error

# errno -> the reason kubepki's messages give for it (a file on a node is the subject).
_OS_REASONS: Mapping[int, str] = {
    errno.ENOENT: "does not exist",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only filesystem",
    errno.ELOOP: "refusing to follow a symbolic link",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "a parent is not a directory",
    errno.EEXIST: "exists already",
    errno.EIO: "input/output error",
}


def os_reason(exc: OSError, overrides: Mapping[int, str] | None = None) -> str:
    """The reason to show for ``exc``: kubepki's wording for its errno (``overrides`` first), else its strerror.

    ``overrides`` rewords an errno where the operation gives it a more precise meaning
    (``EEXIST`` from ``mkdir`` means "exists and is not a directory").
    """
    code = exc.errno or 0
    if overrides is not None and code in overrides:
        return overrides[code]
    return _OS_REASONS.get(code) or exc.strerror or str(exc) or type(exc).__name__


def node_error(exc: OSError, path: str | PurePath, *, node: str | None = None,
               overrides: Mapping[int, str] | None = None) -> NodeError:
    """``exc`` as a :class:`NodeError` about ``path`` (``"<path>: <reason>"``), keeping its ``errno``."""
    err = NodeError(f"{path}: {os_reason(exc, overrides)}", path=path, node=node)
    err.errno = exc.errno
    return err


#: PEM armour lines (``-----BEGIN RSA PRIVATE KEY-----``) and the words "PRIVATE KEY".
_PEM_TEXT = re.compile(r"-----(BEGIN|END) ?([^\n-]{0,64})-----")


def scrub(message: str) -> str:
    """``message`` with PEM armour and "PRIVATE KEY" spelled so no key can be read or grepped from it.

    Messages quote untrusted values (a path in an archive, a field of a manifest): one could
    carry a pasted key, which must never reach an error, a report or a log.
    """
    cleaned = _PEM_TEXT.sub(lambda m: f"[PEM {m.group(1).lower()} {m.group(2).lower()}]".replace(" ]", "]"),
                            message)
    return cleaned.replace("PRIVATE KEY", "private key")


def quoted(value: object, limit: int = 120) -> str:
    """An untrusted value as a message may show it: its ``repr``, scrubbed, cut to ``limit`` characters."""
    shown = scrub(repr(value))
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def redacted(value: object, *, whole: int = 16, prefix: int = 6) -> str:
    """A configuration value as a message may show it: whole when short, else its start and its length.

    A value in a kubeadm config or a flag may be a secret someone pasted into the wrong
    field (a token, a key): a message names it without repeating it.
    """
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= whole:
        return quoted(text)
    return f"{quoted(text[:prefix])[:-1]}...' ({len(text)} characters)"

