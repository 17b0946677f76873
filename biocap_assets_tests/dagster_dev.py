"""`dagster dev` for browser tests: started in its own process group, stopped by its id.

`dagster dev` started with `&` from a non-interactive shell ignores SIGTERM, so it is
started from subprocess with ``start_new_session=True`` and stopped by signalling that
group only (SIGINT, then SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from biocap_assets_tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent


def graphql(base_url: str, query: str, variables: dict | None = None) -> dict:
    """A query against the webserver's GraphQL endpoint (what the UI itself talks to)."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base_url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


def wait_for(what: str, condition, timeout: float = 420.0, every: float = 1.0):
    """``condition()``'s first true value, asked every ``every`` seconds; a TimeoutError
    naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"waited {timeout:.0f}s for {what}")


def _stop_group(process: subprocess.Popen, grace: float = 20.0) -> None:
    if process.poll() is not None:
        return
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def dagster_dev(biocap_home: Path, log_path: Path, timeout: float = 180.0) -> Iterator[str]:
    """Yield the base URL of `biocap dev` (dagster dev: webserver + daemon) on 127.0.0.1."""
    dagster_home = biocap_home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "biocap_assets" / "dagster.yaml", dagster_home / "dagster.yaml")
    port = free_port()
    env = {
        **os.environ,
        "BIOCAP_HOME": str(biocap_home),
        "DAGSTER_HOME": str(dagster_home),
        "PYTHONUNBUFFERED": "1",
    }
    # `biocap dev` (what `make dev` runs): dagster dev serving the `biocap` location
    command = [str(Path(sys.executable).with_name("biocap")), "dev", "--port", str(port)]
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"dagster dev exited early: see {log_path}")
                try:
                    data = graphql(base_url, "{ repositoriesOrError { __typename } }")
                    if data["repositoriesOrError"]["__typename"] == "RepositoryConnection":
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"dagster dev did not answer in {timeout}s: {log_path}")
                time.sleep(1)
            yield base_url
        finally:
            _stop_group(process)
