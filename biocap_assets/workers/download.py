"""Worker: download benchmark images and verify md5 (``python -m ...workers.download``).

Takes the items as extras (``url`` as the annotation gives it, ``root``, ``name``,
``md5``) and reports what was fetched, already present, missing, mismatched or refused.
Relative URLs resolve against ``base_url``; with ``demo_images`` the worker first serves
that folder on loopback and resolves against it (only that server is allowed as a
loopback host besides ``allowed_hosts``).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from biocap_assets.demo.file_server import FolderServer
from biocap_assets.evaluation.download import (
    DEADLINE,
    MAX_BYTES,
    DownloadItem,
    Limits,
    download_all,
    resolve,
)
from biocap_assets.workers.runtime import run_main, worker_context


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=8)
    args, _ = parser.parse_known_args(argv)
    with worker_context({"workers": args.workers, "items": []}) as ctx:
        extras = ctx.extras
        hosts = list(extras.get("allowed_hosts") or [])
        with contextlib.ExitStack() as stack:
            base_url = extras.get("base_url") or ""
            if extras.get("demo_images"):
                server = stack.enter_context(FolderServer(extras["demo_images"]))
                base_url, hosts = server.base_url, [*hosts, server.host]
            items = [
                DownloadItem(
                    resolve(i["url"], base_url), Path(i["root"]), i["name"], i.get("md5", "")
                )
                for i in extras["items"]
            ]
            limits = Limits.with_hosts(
                hosts,
                max_bytes=int(extras.get("max_bytes") or MAX_BYTES),
                deadline=float(extras.get("deadline") or DEADLINE),
            )
            ctx.log.info(f"checking {len(items)} benchmark images")
            report = download_all(items, workers=int(extras["workers"]), limits=limits)
        ctx.log.info(f"images: {report.as_dict()}")
        ctx.report_result(report.as_dict())


if __name__ == "__main__":
    run_main(main)
