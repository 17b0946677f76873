"""Resolve the GPU worker image's Python packages with pip, and write the lock.

    python deploy/docker/lock_gpu.py

pip resolves ``biocap[gpu]`` (the project and its pinned vLLM) without installing anything,
for the interpreter that runs this script: run it with CPython 3.11 on Linux x86-64, as in
the image (``make`` does: ``.venv/bin/python``). It writes:

- ``gpu-worker.lock.txt``: every package ``name==version``, what the Dockerfile installs;
- ``gpu-worker.vllm-requires.txt``: vLLM's own ``Requires-Dist``, as its release declares
  them, for the test that checks the lock's torch against them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def main() -> int:
    if sys.version_info[:2] != (3, 11) or sys.platform != "linux":
        sys.exit("run this with CPython 3.11 on Linux x86-64: the image's platform")
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                "--ignore-installed", "--report", str(report), f"{REPO}[gpu]",
            ],
            check=True,
        )  # fmt: skip
        installs = json.loads(report.read_text())["install"]
    pins = sorted(
        (i["metadata"]["name"].lower(), i["metadata"]["version"])
        for i in installs
        if i["metadata"]["name"].lower() != "biocap"
    )
    vllm = next(i for i in installs if i["metadata"]["name"].lower() == "vllm")
    header = (
        "# written by deploy/docker/lock_gpu.py (pip's resolution of biocap[gpu]); do not edit\n"
    )
    (HERE / "gpu-worker.lock.txt").write_text(
        header + "".join(f"{name}=={version}\n" for name, version in pins)
    )
    (HERE / "gpu-worker.vllm-requires.txt").write_text(
        header.replace("pip's resolution of biocap[gpu]", f"vllm {vllm['metadata']['version']}")
        + "".join(f"{r}\n" for r in vllm["metadata"].get("requires_dist", []))
    )
    print(f"{len(pins)} packages locked; vllm {vllm['metadata']['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
