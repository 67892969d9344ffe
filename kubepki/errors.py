"""Exceptions raised by kubepki.

Every exception kubepki raises on purpose derives from :class:`KubepkiError` and
carries the context it is about (``path``, ``name``, ``node``) as attributes::

    KubepkiError
    ├── ConfigError (ValueError)         bad arguments, options or kubeadm config
    │   └── UnknownItemError (KeyError)  a catalog name that does not exist
    ├── NodeError (OSError)              a node's root or files cannot be reached
    │   └── PathEscapeError              a path or symlink leads outside the node's root
    ├── ParseError (ValueError)          bytes that are not what they should be
    │   ├── PEMError                     certificates and keys (PEM/DER)
    │   ├── KubeconfigError              kubeconfig files
    │   └── ManifestError                static pod manifests
    ├── BackupError                      creating, verifying or restoring backups
    │   └── UnsafeArchiveError           an archive that would write outside the root
    ├── RenewalError                     planning or applying a renewal
    │   ├── SignerError                  a CA that cannot or must not sign
    │   └── LockError                    another kubepki is writing to the node
    └── RestartError                     planning, executing or verifying restarts

Lower-layer errors (``OSError``, ``yaml.YAMLError``, ``cryptography`` errors) are
mapped onto these at kubepki's edges, so callers need only catch ``KubepkiError``.
Messages never contain private key material.
"""

from __future__ import annotations

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


class RestartError(KubepkiError):
    """A restart that cannot be planned, executed or verified."""
