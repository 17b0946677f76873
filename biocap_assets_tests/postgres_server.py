"""A real PostgreSQL server for the DuckLake catalog tests (Debian's postgresql package).

initdb into a temp folder, `postgres` on a free loopback port in its own process group,
stopped by that group's id. PostgreSQL refuses to run as root, so as root the server
runs as the `postgres` system user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from biocap_assets_tests.ports import free_port


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    bin_dir: Path

    def ducklake_catalog(self, dbname: str) -> str:
        return f"postgres:host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def create_database(self, name: str) -> str:
        subprocess.run(
            [str(self.bin_dir / "createdb"), "-h", self.host, "-p", str(self.port)]
            + ["-U", self.user, name],
            check=True,
            capture_output=True,
        )
        return name


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """Start a throwaway server; its folder is under /tmp, which the postgres user can reach."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries are not installed (make system-deps)")
    root = Path(tempfile.mkdtemp(prefix="biocap-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        prefix = [shutil.which("runuser") or "runuser", "-u", "postgres", "--"]
    data, user, port = root / "data", "biocap", free_port()
    subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", user],
        check=True,
        capture_output=True,
    )
    server = Postgres("127.0.0.1", port, user, bin_dir)
    with open(root / "postgres.log", "wb") as log:
        process = subprocess.Popen(
            [*prefix, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)]
            + ["-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                ready = subprocess.run(
                    [str(bin_dir / "pg_isready"), "-h", server.host, "-p", str(port)],
                    capture_output=True,
                )
                if ready.returncode == 0:
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: see {root / 'postgres.log'}")
                time.sleep(0.3)
            yield server
        finally:
            try:
                os.killpg(process.pid, signal.SIGINT)  # fast shutdown
                process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)
