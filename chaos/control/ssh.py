"""SSH sessions to node hosts (paramiko): run commands, upload code, download logs.

One `SshSession` per node holds one paramiko transport; every command opens its own channel
on it, so several threads may use one session at once (paramiko transports are thread-safe).
Host keys are accepted on first sight and kept in memory (as Jepsen does by default): the
hosts are containers we just made or hosts the user named, and their keys change per image.
Keys, not passwords: `ensure_keypair(store_dir)` makes one ed25519 key per store directory.
"""
from __future__ import annotations

import os
import shlex
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from chaos.errors import SetupError


#: seconds to wait, after a command's exit status, for the end of its output
EOF_GRACE = 2.0


@dataclass(frozen=True)
class Result:
    """What a remote command did."""

    rc: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class RemoteError(SetupError):
    """A remote command that had to succeed did not (carries the command's result)."""

    def __init__(self, message: str, result: Result | None = None):
        super().__init__(message)
        self.result = result


def ensure_keypair(store_dir: str) -> tuple[str, str]:
    """(private key path, public key line) of the store's SSH key, creating it when missing.

    ed25519 via `cryptography` (paramiko cannot generate ed25519 itself), written in OpenSSH
    format with mode 0600 so `ssh -i` accepts it too.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key_dir = Path(store_dir) / "ssh"
    private, public = key_dir / "id_ed25519", key_dir / "id_ed25519.pub"
    if not (private.exists() and public.exists()):
        key_dir.mkdir(parents=True, exist_ok=True)
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        pub = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        tmp = private.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, private)
        public.write_bytes(pub + b" chaos\n")
    return str(private), public.read_text().strip()


def load_key(path: str) -> paramiko.PKey:
    """A private key of any type paramiko knows; SetupError naming the file when unreadable."""
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(path)
        except FileNotFoundError:
            raise SetupError(f"SSH key {path} does not exist: pass --ssh-key PATH") from None
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(str(exc))
    raise SetupError(f"SSH key {path} could not be read (encrypted or unknown type): use an "
                     "unencrypted ed25519/ecdsa/rsa key")


def pack_trees(roots: list[str], suffixes: tuple[str, ...] = (".py",)) -> tuple[bytes, int]:
    """(an uncompressed tar of the files under each root ending in suffixes, their count).

    Each root keeps its own name as the top directory (chaos/..., targets/...). Packed once and
    sent to every node: packing is CPU work the controller should not repeat per node.
    """
    import io
    import tarfile

    buf = io.BytesIO()
    count = 0
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for root in roots:
            base = Path(root)
            for path in sorted(base.rglob("*")):
                if path.is_file() and path.suffix in suffixes and "__pycache__" not in path.parts:
                    tar.add(path, arcname=str(Path(base.name) / path.relative_to(base)))
                    count += 1
    return buf.getvalue(), count


class SshSession:
    """A connected SSH session to one host.

    `connect` retries until `timeout` while the host refuses or is still starting sshd, then
    fails with a SetupError naming the host and what to fix (unreachable vs key refused).
    """

    def __init__(self, host: str, user: str, key: paramiko.PKey, port: int = 22):
        self.host, self.user, self.key, self.port = host, user, key, port
        self._client: paramiko.SSHClient | None = None

    def __repr__(self) -> str:
        return f"SshSession({self.user}@{self.host}:{self.port})"

    def connect(self, timeout: float = 30.0) -> SshSession:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            try:
                client.connect(
                    self.host, port=self.port, username=self.user, pkey=self.key,
                    timeout=min(5.0, max(0.5, deadline - time.monotonic())),
                    banner_timeout=10, auth_timeout=10,
                    allow_agent=False, look_for_keys=False,
                )
                transport = client.get_transport()
                assert transport is not None
                transport.set_keepalive(15)
                self._client = client
                return self
            except paramiko.AuthenticationException:
                client.close()
                raise SetupError(
                    f"SSH key refused by {self.user}@{self.host}:{self.port}: add the public key "
                    "to that user's ~/.ssh/authorized_keys, or pass the right --ssh-key/--ssh-user"
                ) from None
            except (OSError, paramiko.SSHException, EOFError) as exc:
                client.close()
                last = exc
            if time.monotonic() >= deadline:
                raise SetupError(
                    f"SSH host {self.host}:{self.port} unreachable after {timeout:.0f}s "
                    f"({type(last).__name__}: {last}): check the address, that sshd runs, and "
                    "the firewall"
                )
            time.sleep(0.2)

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            raise SetupError(f"{self!r} is not connected")
        return self._client

    def run(self, command: str, timeout: float = 30.0, check: bool = False,
            stdin: bytes | None = None) -> Result:
        """Run `command` through the remote shell; with check, a non-zero rc raises RemoteError."""
        try:
            chan = self.client.get_transport().open_session(timeout=timeout)  # type: ignore[union-attr]
            chan.settimeout(timeout)
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            # Done only when the exit status AND the end of the output are in: sshd may send
            # the exit status before it has forwarded the last of the command's output (seen
            # on a loaded host: `iptables -S` and /proc reads came back empty with status 0,
            # which read as "no rules" and "process gone").
            grace: float | None = None  # after the status: how long to wait for the EOF
            while True:
                if chan.recv_ready():
                    out += chan.recv(65536)
                elif chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                elif chan.exit_status_ready() and (
                        chan.eof_received or chan.closed
                        or time.monotonic() > (grace := grace or time.monotonic() + EOF_GRACE)):
                    # EOF, or a background child still holds the output open (a daemon
                    # started without redirecting it): what came within the grace is all
                    while chan.recv_ready():
                        out += chan.recv(65536)
                    while chan.recv_stderr_ready():
                        err += chan.recv_stderr(65536)
                    break
                elif time.monotonic() > deadline:
                    raise TimeoutError()
                elif chan.exit_status_ready():
                    time.sleep(0.002)  # status in, output still on its way
                else:
                    chan.status_event.wait(0.01)
            rc = chan.recv_exit_status()
            chan.close()
        except TimeoutError:
            raise RemoteError(f"{self.host}: `{command[:80]}` timed out after {timeout}s") from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise RemoteError(f"{self.host}: SSH failed running `{command[:80]}`: {exc}") from None
        result = Result(rc, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and not result.ok:
            detail = (result.err or result.out).strip().splitlines()[-1:] or [""]
            raise RemoteError(
                f"{self.host}: `{command[:80]}` exited {rc}: {detail[0][:200]}", result
            )
        return result

    def upload_tree(self, local_root: str, remote_root: str, suffixes: tuple[str, ...] = (".py",)
                    ) -> int:
        """Copy the files under local_root ending in `suffixes` to remote_root; the count."""
        data, count = pack_trees([local_root], suffixes)
        self.upload_tar(data, remote_root)
        return count

    def upload_tar(self, data: bytes, remote_root: str) -> None:
        """Unpack a tar archive (from `pack_trees`) under remote_root, in one channel.

        One tar stream is much faster than a file-by-file SFTP walk for hundreds of small files.
        """
        q = shlex.quote(remote_root)
        self.run(f"mkdir -p {q} && tar -xf - -C {q}", stdin=data, check=True, timeout=60)

    def download(self, remote_path: str, local_path: str) -> bool:
        """Copy one remote file (SFTP); False when it does not exist."""
        try:
            with self.client.open_sftp() as sftp:
                try:
                    if not stat.S_ISREG(sftp.stat(remote_path).st_mode or 0):
                        return False
                except FileNotFoundError:
                    return False
                Path(local_path).parent.mkdir(parents=True, exist_ok=True)
                sftp.get(remote_path, local_path)
                return True
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise RemoteError(f"{self.host}: download of {remote_path} failed: {exc}") from None

    def download_dir(self, remote_dir: str, local_dir: str) -> list[str]:
        """Copy the regular files directly in remote_dir into local_dir (SFTP); their names."""
        got = []
        try:
            with self.client.open_sftp() as sftp:
                try:
                    entries = sftp.listdir_attr(remote_dir)
                except FileNotFoundError:
                    return []
                Path(local_dir).mkdir(parents=True, exist_ok=True)
                for entry in entries:
                    if stat.S_ISREG(entry.st_mode or 0):
                        sftp.get(f"{remote_dir}/{entry.filename}",
                                 str(Path(local_dir, entry.filename)))
                        got.append(entry.filename)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise RemoteError(f"{self.host}: download of {remote_dir} failed: {exc}") from None
        return got

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
