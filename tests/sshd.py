"""Real OpenSSH servers on 127.0.0.1 for the SSH, cluster and Ansible tests.

:func:`start_fleet` starts ``count`` ``sshd`` processes (Debian's openssh-server),
each on its own port with its own ed25519 host key, all accepting one client key
for ``root``; :meth:`Fleet.known_hosts` writes a known_hosts file naming their
keys (or, for negative controls, other keys). :meth:`Fleet.stop` ends exactly the
processes it started, by PID: each listener and the per-connection children it
forked. Tests skip with a reason when ``/usr/sbin/sshd`` is absent.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
#: Why SSH tests are skipped here, or None when a real sshd can run.
SKIP_REASON: str | None = (
    None if os.access(SSHD, os.X_OK) and os.access(SSH_KEYGEN, os.X_OK)
    else "needs OpenSSH's sshd and ssh-keygen (apt-get install openssh-server)"
)
if SKIP_REASON is None and hasattr(os, "geteuid") and os.geteuid() != 0:
    SKIP_REASON = "the test sshd servers log in as root: run the tests as root"
if SKIP_REASON is None and importlib.util.find_spec("paramiko") is None:
    SKIP_REASON = "needs paramiko (pip install 'paramiko>=3.2')"

_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
Subsystem sftp internal-sftp
MaxStartups 200:30:400
MaxSessions 64
LogLevel ERROR
"""


def keygen(path: Path, *, comment: str = "kubepki-test") -> Path:
    """An ed25519 key pair at ``path`` and ``path.pub`` (no passphrase)."""
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class Server:
    """One running sshd: its port, host key and process."""

    port: int
    directory: Path
    host_key: Path
    process: subprocess.Popen[bytes] = attrs.field(repr=False)

    @property
    def host_key_line(self) -> str:
        """``<type> <base64>`` of the host key, as known_hosts holds it."""
        return " ".join((self.host_key.with_suffix(".pub")).read_text().split()[:2])

    def log(self) -> str:
        """What sshd wrote on stderr so far."""
        try:
            return (self.directory / "sshd.log").read_text(errors="replace")
        except OSError:
            return ""


@attrs.define
class Fleet:
    """Several sshd servers sharing one client key."""

    directory: Path
    client_key: Path
    servers: list[Server] = attrs.field(factory=list)

    def known_hosts(self, path: Path, *, wrong: Sequence[int] = ()) -> Path:
        """Write a known_hosts naming every server's key; servers at indexes ``wrong`` get
        a freshly made key that is not theirs (a negative control)."""
        lines = []
        for i, server in enumerate(self.servers):
            key = server.host_key_line
            if i in wrong:
                other = keygen(self.directory / f"impostor-{i}-{time.monotonic_ns()}", comment="impostor")
                key = " ".join(other.with_suffix(".pub").read_text().split()[:2])
            lines.append(f"[127.0.0.1]:{server.port} {key}")
        path.write_text("\n".join(lines) + "\n")
        return path

    def stop(self) -> None:
        """End every process this fleet started (listeners, then their children), by PID."""
        for server in self.servers:
            _stop(server.process)
        self.servers.clear()


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc), recursively."""
    out: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; the ppid follows it.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(entry))
            out.extend(_children(int(entry)))
    return out


def _stop(process: subprocess.Popen[bytes]) -> None:
    children = _children(process.pid)
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    for pid in children + _children(process.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)


def _wait_ready(server: Server, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"sshd on port {server.port} exited: {server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd on port {server.port} did not come up: {server.log()}")


def start_server(directory: Path, authorized_keys: Path) -> Server:
    """Start one sshd serving this machine on a free port of 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key = keygen(directory / "host_ed25519", comment="kubepki-test-host")
    # sshd's privilege separation directory; Debian creates it from its init scripts.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    for _attempt in range(5):
        port = free_port()
        config = directory / "sshd_config"
        config.write_text(_CONFIG.format(port=port, host_key=host_key, pid_file=directory / "sshd.pid",
                                         authorized_keys=authorized_keys))
        log = open(directory / "sshd.log", "wb")  # noqa: SIM115 - sshd keeps writing to it
        try:
            process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config), "-p", str(port)],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        server = Server(port=port, directory=directory, host_key=host_key, process=process)
        try:
            _wait_ready(server)
        except RuntimeError:
            _stop(process)
            if "Address already in use" in server.log():
                continue  # another process took the port between free_port() and bind()
            raise
        return server
    raise RuntimeError("no free port for sshd after 5 attempts")


def start_fleet(directory: Path, count: int) -> Fleet:
    """``count`` sshd servers accepting one new client key; stop them with :meth:`Fleet.stop`."""
    directory.mkdir(parents=True, exist_ok=True)
    client_key = keygen(directory / "client_ed25519", comment="kubepki-test-client")
    authorized = directory / "authorized_keys"
    shutil.copyfile(client_key.with_suffix(".pub"), authorized)
    authorized.chmod(0o600)
    fleet = Fleet(directory=directory, client_key=client_key)
    try:
        for i in range(count):
            fleet.servers.append(start_server(directory / f"sshd{i}", authorized))
    except BaseException:
        fleet.stop()
        raise
    return fleet


@contextlib.contextmanager
def fleet(directory: Path, count: int) -> Iterator[Fleet]:
    """:func:`start_fleet` for a ``with`` block."""
    f = start_fleet(directory, count)
    try:
        yield f
    finally:
        f.stop()
