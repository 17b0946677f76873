"""Benchmark the Wikipedia crawl against a loopback MediaWiki server with 50 ms latency.

    python bench/wiki.py --taxa 600

The crawl (the real worker process, default polite settings: 3 requests in flight,
AutoThrottle) is compared in the same run with (a) the bound 3 / latency requests
per second and (b) a bare client: 3 threads fetching the same parse URLs with
urllib, no Scrapy. Printed: pages/s and requests/s against both, and requests per
taxon (target: at most 1.1 plus the misses, which need a search).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from biocap_assets.demo.wiki_server import MediaWikiServer  # noqa: E402
from biocap_assets.scraping import mediawiki as api  # noqa: E402
from biocap_assets_tests.wiki_helpers import make_pages, run_worker, taxon  # noqa: E402


def bare_client(api_url: str, titles: list[str], concurrency: int) -> float:
    urls = [api.parse_url(api_url, t) for t in titles]

    def fetch(url: str) -> int:
        with urllib.request.urlopen(url, timeout=10) as response:
            return len(response.read())

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(fetch, urls))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--taxa", type=int, default=600)
    parser.add_argument("--miss-share", type=float, default=0.1)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument(
        "--no-autothrottle",
        action="store_true",
        help="measure without AutoThrottle (not the default settings)",
    )
    args = parser.parse_args()

    n_miss = int(args.taxa * args.miss_share)
    names = [f"Benchus species{i:05d}" for i in range(args.taxa)]
    pages = make_pages(
        [(n, None, {"Description": f"{n} is green."}, False) for n in names[n_miss:]]
    )
    taxa = [taxon(f"t{i:05d}", f"Animalia A B C D {n}") for i, n in enumerate(names)]
    bound = args.concurrency / args.latency
    with (
        MediaWikiServer(pages, latency=args.latency) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        report = run_worker(
            Path(tmp),
            taxa,
            server.api_url,
            {
                "concurrency": args.concurrency,
                "flush_every": 200,
                "autothrottle": not args.no_autothrottle,
            },
            timeout=3600,
        )
        bare_seconds = bare_client(server.api_url, names[n_miss:], args.concurrency)

    crawl_rps = report["requests"] / report["seconds"]
    found = report["status_counts"].get("found", 0)
    bare_rps = (args.taxa - n_miss) / bare_seconds
    print(json.dumps(report, indent=1))
    print(
        f"\ntaxa {args.taxa} ({n_miss} without a page), latency {args.latency * 1000:.0f} ms, "
        f"concurrency {args.concurrency}"
    )
    print(
        f"crawl:       {report['seconds']:.1f} s, {crawl_rps:.1f} req/s, "
        f"{found / report['seconds']:.1f} pages/s (includes Scrapy start-up)"
    )
    print(f"bare client: {bare_seconds:.1f} s, {bare_rps:.1f} req/s")
    print(f"bound:       {bound:.0f} req/s")
    print(f"crawl / bound:       {crawl_rps / bound:.2f}")
    print(f"crawl / bare client: {crawl_rps / bare_rps:.2f}")
    print(
        f"requests per taxon:  {report['requests_per_taxon']:.3f} "
        f"(target <= 1.1 + misses: found pages need {1 + 1 / 50:.2f}, "
        f"a miss needs 1 search more)"
    )
    print(
        f"requests per found taxon, excluding the misses' searches: "
        f"{(report['requests'] - n_miss) / args.taxa:.3f}"
    )


if __name__ == "__main__":
    main()
