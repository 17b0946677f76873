"""Worker: crawl Wikipedia for a list of taxa (``python -m biocap_assets.workers.wiki``).

Reads the taxa to fetch from a Parquet file, writes Parquet parts (see
scraping/pipelines.py) and reports counts, requests and retries. Scrapy's
reactor cannot restart inside one process, which is why this is a worker.
With ``demo_wiki`` it first serves the demo world's pages on loopback.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack

from scrapy.crawler import CrawlerProcess

from biocap_assets.common.files import read_parquet
from biocap_assets.demo.wiki_server import MediaWikiServer
from biocap_assets.progress import ProgressLog
from biocap_assets.scraping.settings import (
    CrawlOptions,
    crawler_settings,
    quiet_startup_logs,
    require_contact,
    split_credentials,
)
from biocap_assets.scraping.spider import WikiSpider
from biocap_assets.workers.runtime import WorkerContext, run_main, worker_context


class Progress:
    """Every ``every`` taxa (and the last): done / total, rate and ETA in the run's logs."""

    def __init__(self, ctx: WorkerContext, every: int, total: int):
        self.every = max(1, every)
        self.log = ProgressLog(ctx.log.info, "wiki", total, "taxa", min_interval=0)

    def __call__(self, done: int, total: int) -> None:
        if done % self.every == 0 or done == total:
            self.log(done)


def crawl(ctx: WorkerContext) -> dict:
    extras = ctx.extras
    options = CrawlOptions.from_extras(extras)
    taxa = read_parquet(extras["todo"]).to_pylist()
    with ExitStack() as stack:
        api_url = extras.get("api_url") or ""
        if extras.get("demo_wiki"):
            server = stack.enter_context(MediaWikiServer.from_folder(extras["demo_wiki"]))
            api_url = server.api_url
            ctx.log.info(f"serving the demo wiki at {api_url}")
        if not api_url:
            raise ValueError("no MediaWiki API URL given (api_url or demo_wiki)")
        require_contact(api_url, options.contact)
        api_url, auth = split_credentials(api_url)
        settings = {
            **crawler_settings(options),
            **auth,
            "ITEM_PIPELINES": {"biocap_assets.scraping.pipelines.ParquetPartsPipeline": 300},
            "BIOCAP_PARTS_URL": extras["parts"],
            "BIOCAP_FLUSH_EVERY": options.flush_every,
        }
        started = time.perf_counter()
        process = CrawlerProcess(settings)
        quiet_startup_logs()
        crawler = process.create_crawler(WikiSpider)
        process.crawl(
            crawler,
            taxa=taxa,
            api_url=api_url,
            keywords=options.keywords,
            keep_lead=options.keep_lead,
            section_policy=options.section_policy,
            maxlag=options.maxlag,
            progress=Progress(ctx, options.progress_every, len(taxa)),
        )
        process.start()
        elapsed = time.perf_counter() - started
    stats = crawler.stats.get_stats()
    spider: WikiSpider = crawler.spider
    finished = stats.get("finish_reason") == "finished"
    if finished and spider.emitted < len(taxa):
        # every taxon ends as a row, if only an error row; a gap is a bug, not a result
        raise RuntimeError(
            f"the crawl finished with {len(taxa) - spider.emitted} of {len(taxa)} taxa "
            f"unaccounted for ({stats.get('spider_exceptions/count', 0)} callback errors, "
            "see the log above); their rows were not written and the next run retries them"
        )
    requests = int(stats.get("downloader/request_count", 0))
    return {
        "taxa": len(taxa),
        "items": spider.emitted,
        "status_counts": dict(spider.status_counts),
        "requests": requests,
        "requests_per_taxon": round(requests / len(taxa), 4) if taxa else 0.0,
        "retries": int(stats.get("retry/count", 0)),
        "retry_wait_seconds": round(float(stats.get("biocap/retry_wait_seconds", 0.0)), 2),
        "responses_429": int(stats.get("downloader/response_status_count/429", 0)),
        "finish_reason": stats.get("finish_reason", ""),
        "seconds": round(elapsed, 2),
        "api_url": api_url,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--todo", help="Parquet file of taxa (taxon_id, binomial, ranks...)")
    parser.add_argument("--parts", help="folder (path or URL) for the Parquet parts")
    parser.add_argument("--api-url", dest="api_url", default="")
    parser.add_argument("--demo-wiki", dest="demo_wiki", default="")
    parser.add_argument("--contact", default="")
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--close-after-pages", dest="close_after_pages", type=int, default=0)
    parser.add_argument(
        "--options", default="{}", help="more crawl options as JSON (see scraping/settings.py)"
    )
    args, _ = parser.parse_known_args(argv)
    cli = {k: v for k, v in vars(args).items() if v not in (None, "") and k != "options"}
    cli |= json.loads(args.options)
    with worker_context(cli) as ctx:
        ctx.require(parser, "todo", "parts")
        ctx.report_result(crawl(ctx))


if __name__ == "__main__":
    run_main(main)
