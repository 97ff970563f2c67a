"""A real, throwaway PostgreSQL server for the SQL source tests.

`PostgresServer` runs `initdb` into a fresh temporary directory and starts `postgres` on a free
port on 127.0.0.1 (its unix socket also lives in that directory, so it never touches
/var/run/postgresql or a system cluster). Password authentication (scram-sha-256) is on for TCP,
so the tests exercise a URL that carries a secret.

PostgreSQL refuses to run as root. When the tests run as root (CI containers), every server
command runs as the unprivileged `postgres` user through `runuser` (or `su` when runuser is
missing) and the directory is handed to that user.

Missing binaries are an error, not a skip: the SQL source is part of the product, so CI must
have PostgreSQL installed (see `.ci/run`; on Debian: `apt-get install -y postgresql`).
"""
from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SERVER_USER = "postgres"     # the OS account that runs the server when we are root
DB_USER = "capi"             # the database role the tests connect as
DB_PASSWORD = "s3cret-Pw_4-tests"
DB_NAME = "postgres"

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) are needed by the SQL source tests. "
    "On Debian/Ubuntu: `apt-get install -y postgresql` (they land in /usr/lib/postgresql/<v>/bin); "
    "on macOS: `brew install postgresql`."
)


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says how to fix that."""


def find_bin_dir() -> Path:
    """The directory holding initdb and pg_ctl: PATH first, then Debian's versioned layout."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    candidates = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    if not candidates:
        raise PostgresUnavailable(INSTALL_HINT)

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    return Path(max(candidates, key=version)).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """initdb + pg_ctl start in a temporary directory; `stop()` removes everything."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="capi-sync-pg-"))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self._run_as = self._unprivileged_prefix()

    @property
    def url(self) -> str:
        return f"postgresql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.port}/{DB_NAME}"

    def start(self) -> PostgresServer:
        try:
            self._init_and_start()
        except BaseException:
            self.stop()
            raise
        return self

    def _init_and_start(self) -> None:
        password_file = self.root / "password"
        password_file.write_text(DB_PASSWORD + "\n")
        self._hand_over(self.root)
        self._run(
            "initdb", "--pgdata", str(self.data_dir), "--username", DB_USER,
            "--pwfile", str(password_file), "--auth-host", "scram-sha-256",
            "--auth-local", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync",
            "--no-instructions",
        )
        options = " ".join([
            f"-p {self.port}", "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.root}", "-c fsync=off",
            "-c synchronous_commit=off", "-c full_page_writes=off", "-c timezone=UTC",
        ])
        self._run(
            "pg_ctl", "--pgdata", str(self.data_dir), "--log", str(self.log_file),
            "--options", options, "--wait", "--timeout", "30", "start",
        )

    def stop(self) -> None:
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "--pgdata", str(self.data_dir), "--mode", "immediate",
                          "--wait", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _unprivileged_prefix(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root and there is no '{SERVER_USER}' user to run PostgreSQL as "
                f"(it refuses root). Create it: `useradd --system --user-group "
                f"--home-dir /var/lib/postgresql {SERVER_USER}` (installing the Debian "
                f"postgresql package also creates it). {INSTALL_HINT}"
            ) from None
        if shutil.which("runuser"):
            return ["runuser", "-u", SERVER_USER, "--"]
        return ["su", SERVER_USER, "-s", "/bin/sh", "-c"]

    def _hand_over(self, path: Path) -> None:
        if self._run_as:
            entry = pwd.getpwnam(SERVER_USER)
            for item in [path, *path.rglob("*")]:
                os.chown(item, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self._run_as[:1] == ["su"]:
            command = [*self._run_as, shlex.join(command)]
        else:
            command = [*self._run_as, *command]
        result = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
        )
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise PostgresUnavailable(
                f"`{program}` failed (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{log[-2000:]}\n{INSTALL_HINT}"
            )
