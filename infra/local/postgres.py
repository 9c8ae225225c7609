"""A throwaway PostgreSQL cluster: `initdb` + `pg_ctl` on a free loopback port in a directory.

The Debian package (`postgresql`, see infra/apt-packages.txt) provides the binaries under
/usr/lib/postgresql/<major>/bin. PostgreSQL refuses to run as root, so when this process is
root every server command runs as the `postgres` OS user through `runuser -u postgres --`,
and the cluster directory is handed to that user.

Authentication is `trust` on 127.0.0.1 and the cluster's own Unix socket only: this is for
tests, benchmarks and the local stack, never for production. `durable=False` turns off fsync
and synchronous commit (tests: a crash of the machine is not what they test, a crash of a
client is); benchmarks keep the default durable settings.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from infra.local.ports import free_port, wait_for_port

POSTGRES_OS_USER = "postgres"
SUPERUSER = "postgres"


def postgres_bin_directory() -> Path:
    """The newest installed /usr/lib/postgresql/<major>/bin that has `initdb`."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        message = (
            "no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)"
        )
        raise FileNotFoundError(message)
    return candidates[-1].parent


def _processes_in(directory: str) -> list[int]:
    """The pids of the processes whose working directory is `directory`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if str((entry / "cwd").readlink()) == directory:
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", POSTGRES_OS_USER, "--", *command]
    return command


@dataclass
class PostgresCluster:
    """One PostgreSQL server on 127.0.0.1:`port` with its data in `directory`/data.

    `directory` must not exist yet or be empty; None makes a fresh one under the system
    temporary directory and removes it on `stop(remove=True)`.
    """

    directory: Path | None = None
    port: int = field(default_factory=free_port)
    durable: bool = True
    _owns_directory: bool = field(default=False, init=False, repr=False)

    @property
    def data_directory(self) -> Path:
        return self._directory / "data"

    @property
    def _directory(self) -> Path:
        if self.directory is None:
            raise RuntimeError("the cluster has no directory yet (call start())")
        return self.directory

    @property
    def log_file(self) -> Path:
        return self._directory / "server.log"

    def url(self, database: str, *, user: str = SUPERUSER, driver: str = "postgresql") -> str:
        """A connection URL (`driver="postgresql+psycopg"` for SQLAlchemy)."""
        return f"{driver}://{user}@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str, *, user: str = SUPERUSER) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={database} user={user}"

    @property
    def running(self) -> bool:
        if self.directory is None or not (self.data_directory / "postmaster.pid").exists():
            return False
        status = subprocess.run(
            _as_postgres_user(
                [str(postgres_bin_directory() / "pg_ctl"), "status", "-D", str(self.data_directory)]
            ),
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def start(self, *, timeout_seconds: float = 30.0) -> None:
        """initdb (the first time), then start the server and wait until it accepts clients."""
        self.initialize()
        subprocess.run(
            _as_postgres_user(
                [
                    str(postgres_bin_directory() / "pg_ctl"),
                    "start",
                    "--wait",
                    f"--timeout={int(timeout_seconds)}",
                    "-D",
                    str(self.data_directory),
                    "-l",
                    str(self.log_file),
                    "-o",
                    " ".join(self.server_options()),
                ]
            ),
            check=True,
            capture_output=True,
        )
        wait_for_port(self.port, timeout_seconds=timeout_seconds)

    def wait_for_old_backends(self, *, timeout_seconds: float = 30.0) -> None:
        """Waits until no process of a previous server runs in the data directory.

        A postmaster killed with SIGKILL leaves its backends running for a moment (they
        `setsid()`, so killing the postmaster's process group misses them; they exit once
        they notice the postmaster is gone), and a new postmaster refuses to start while
        they still hold the old shared memory. Their working directory is the data
        directory, which is how they are found."""
        deadline = time.monotonic() + timeout_seconds
        data = str(self.data_directory)
        while _processes_in(data):
            if time.monotonic() > deadline:
                message = f"processes of an old server still run in {data}: {_processes_in(data)}"
                raise TimeoutError(message)
            time.sleep(0.1)

    def initialize(self) -> None:
        """The cluster's directory (owned by the `postgres` OS user when we are root) and,
        the first time, `initdb` in it. Safe to call again."""
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="exchange-pg-"))
            self._owns_directory = True
        self._directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            account = pwd.getpwnam(POSTGRES_OS_USER)
            os.chown(self._directory, account.pw_uid, account.pw_gid)
            self._directory.chmod(0o700)
        binaries = postgres_bin_directory()
        if not (self.data_directory / "PG_VERSION").exists():
            subprocess.run(
                _as_postgres_user(
                    [
                        str(binaries / "initdb"),
                        "--pgdata",
                        str(self.data_directory),
                        "--username",
                        SUPERUSER,
                        "--auth",
                        "trust",
                        "--encoding",
                        "UTF8",
                        "--locale",
                        "C",
                        "--no-sync",
                    ]
                ),
                check=True,
                capture_output=True,
            )

    def server_options(self) -> list[str]:
        """The `postgres` server's command-line options: port, socket directory, loopback."""
        options = [
            f"-p {self.port}",
            f"-k {self._directory}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        return options

    def stop(self, *, remove: bool | None = None) -> None:
        """Fast shutdown (clients disconnected, no waiting); removes the directory we made."""
        if self.directory is not None and (self.data_directory / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres_user(
                    [
                        str(postgres_bin_directory() / "pg_ctl"),
                        "stop",
                        "--wait",
                        "-m",
                        "fast",
                        "-D",
                        str(self.data_directory),
                    ]
                ),
                check=False,
                capture_output=True,
            )
        if (self._owns_directory if remove is None else remove) and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def execute(self, statement: sql.Composed | sql.SQL, *, database: str = "postgres") -> None:
        """Run one statement as the superuser outside a transaction (CREATE DATABASE, roles)."""
        with psycopg.connect(self.conninfo(database), autocommit=True) as connection:
            connection.execute(statement)

    def execute_text(self, statement: str, *, database: str = "postgres") -> None:
        """`execute` for a fixed statement written by our own code (no outside input)."""
        self.execute(sql.SQL(statement), database=database)  # type: ignore[arg-type,unused-ignore]

    def create_database(self, name: str, *, template: str = "") -> PostgresDatabase:
        """A new database, empty or a copy of `template` (which must have no connections)."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        self.execute(statement)
        return PostgresDatabase(self, name)

    def drop_database(self, name: str) -> None:
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def database_exists(self, name: str) -> bool:
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as connection:
            found = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
        return found is not None

    def ensure_login_role(self, name: str) -> None:
        """A login role (trust authentication: no password) if it does not exist yet."""
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)
            ).fetchone()
            if exists is None:
                connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class PostgresDatabase:
    """One database of a running cluster."""

    cluster: PostgresCluster
    name: str

    def url(self, *, user: str = SUPERUSER, driver: str = "postgresql+psycopg") -> str:
        return self.cluster.url(self.name, user=user, driver=driver)

    def conninfo(self, *, user: str = SUPERUSER) -> str:
        return self.cluster.conninfo(self.name, user=user)
