"""Worker: download benchmark images and verify md5 (``python -m ...workers.download``).

Takes the items as extras (url, dest, md5) and reports what was fetched, already
present, missing or mismatched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from biocap_assets.evaluation.download import DownloadItem, download_all
from biocap_assets.workers.runtime import run_main, worker_context


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=8)
    args, _ = parser.parse_known_args(argv)
    with worker_context({"workers": args.workers, "items": []}) as ctx:
        items = [
            DownloadItem(i["url"], Path(i["dest"]), i.get("md5", "")) for i in ctx.extras["items"]
        ]
        ctx.log.info(f"checking {len(items)} benchmark images")
        report = download_all(items, workers=int(ctx.extras["workers"]))
        ctx.log.info(f"images: {report.as_dict()}")
        ctx.report_result(report.as_dict())


if __name__ == "__main__":
    run_main(main)
