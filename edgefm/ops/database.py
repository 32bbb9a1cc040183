"""The database that holds the journal and the job queue: a URL at scale, an embedded PostgreSQL on one machine.

`database_url()` is the one place that decides: `--database` / `EDGEFM_DATABASE_URL` when set, else the embedded
server (started on first use, left running for other workers and CLIs on this machine, stopped by
`edgefm db stop`). The embedded server is the machine's PostgreSQL (Debian's `postgresql` package; `make db`
installs it), run from a private data directory on 127.0.0.1 with its own port; nothing is installed into the
system's clusters. PostgreSQL refuses to run as root, so under root it runs as the `postgres` system user and
its data directory lives where that user can reach it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DATABASE_ENV = "EDGEFM_DATABASE_URL"
USER = "edgefm"
DBNAME = "edgefm"
DEFAULT_PORT = 54329
SERVICE_USER = "postgres"


class DatabaseError(RuntimeError):
    """The embedded PostgreSQL cannot be found or started; the message says what to do."""


def postgres_bindir() -> Path:
    """The directory holding initdb and pg_ctl: `pg_config --bindir`, else the newest /usr/lib/postgresql/N."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
        if (found / "initdb").exists():
            return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if versions:
        return versions[-1].parent
    raise DatabaseError(
        "PostgreSQL is not installed: run `make db` (apt-get install postgresql) or pass --database URL"
    )


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        # /root is private: the server's own user could not reach a data directory below it.
        return Path("/var/lib/edgefm/postgres")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgefm" / "postgres"


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A private PostgreSQL server: `start()` makes the data directory on first use and starts the server."""

    data_dir: Path
    port: int = DEFAULT_PORT

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{DBNAME}"

    @property
    def conninfo(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DBNAME}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "data"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(postgres_bindir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise DatabaseError(f"{args[0]} failed: {(result.stderr or result.stdout).strip()[-800:]}")
        return result

    def running(self) -> bool:
        return (
            self.pgdata.exists() and self._run("pg_ctl", "status", "-D", str(self.pgdata), check=False).returncode == 0
        )

    def start(self, timeout: float = 60.0) -> str:
        """Starts the server (a no-op when it is running) and returns its SQLAlchemy URL."""
        if not (self.pgdata / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.data_dir, SERVICE_USER, SERVICE_USER)
                self.data_dir.chmod(0o755)
            self._run("initdb", "-D", str(self.pgdata), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-instructions")
        if not self.running():
            _port_free(self.port)
            options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' -c fsync=on"
            log = self.data_dir / "server.log"
            self._run(
                "pg_ctl", "start", "-D", str(self.pgdata), "-l", str(log), "-o", options, "-w", "-t", str(int(timeout))
            )
        self._create_database(timeout)
        return self.url

    def _create_database(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(f"postgresql://{USER}@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
                    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone() is None:
                        conn.execute(f"CREATE DATABASE {DBNAME}")
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseError(
                        f"PostgreSQL on 127.0.0.1:{self.port} did not accept connections: {exc}"
                    ) from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.running():
            self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w")


def _port_free(port: int) -> None:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise DatabaseError(f"127.0.0.1:{port} is taken by another server: pass --database URL or free the port")


def embedded() -> EmbeddedPostgres:
    return EmbeddedPostgres(default_data_dir(), int(os.environ.get("EDGEFM_DATABASE_PORT", DEFAULT_PORT)))


def database_url(explicit: str | None = None) -> str:
    """The journal and queue database: `explicit`, else $EDGEFM_DATABASE_URL, else the embedded server."""
    url = explicit or os.environ.get(DATABASE_ENV)
    if url:
        return normalise(url)
    return embedded().start()


def normalise(url: str) -> str:
    """`postgresql://…` and `postgres://…` as SQLAlchemy's psycopg 3 URL; others as given."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL (for the queue)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
