"""Where crawled items go: Parquet parts under a folder of the storage root.

Items are flushed every ``flush_every`` items and when the spider closes (also
on a graceful stop, SIGINT/SIGTERM), each part written atomically. A crawl that
is killed keeps every flushed part; the asset loads all parts, so the next run
only fetches what is missing.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
from upath import UPath

from biocap_assets.common.files import write_parquet
from biocap_assets.taxonomy.names import RANKS

WIKI_SCHEMA = pa.schema(
    [
        ("taxon_id", pa.string()),
        ("binomial", pa.string()),
        *((rank, pa.string()) for rank in RANKS),
        ("page_id", pa.int64()),
        ("title", pa.string()),
        ("url", pa.string()),
        ("headings", pa.list_(pa.string())),
        ("text", pa.string()),
        ("text_is_lead", pa.bool_()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("fetched_at", pa.timestamp("us", tz="UTC")),
    ]
)


def write_part(folder: UPath, table: pa.Table, name: str) -> UPath:
    """Write ``table`` as ``folder/name``; readers never see a half-written part."""
    target = folder / name
    write_parquet(str(target), table, compression="zstd")
    return target


class ParquetPartsPipeline:
    def __init__(self, folder: str, flush_every: int):
        self.folder = UPath(folder)
        self.flush_every = max(1, flush_every)
        self.buffer: list[dict] = []
        self.prefix = f"part-{uuid.uuid4().hex[:8]}"
        self.parts = 0
        self.items = 0

    @classmethod
    def from_crawler(cls, crawler):
        return cls(
            crawler.settings["BIOCAP_PARTS_URL"], crawler.settings.getint("BIOCAP_FLUSH_EVERY", 200)
        )

    def process_item(self, item: dict) -> dict:
        self.buffer.append(item)
        self.items += 1
        if len(self.buffer) >= self.flush_every:
            self.flush()
        return item

    def flush(self) -> None:
        if not self.buffer:
            return
        self.parts += 1
        table = pa.Table.from_pylist(self.buffer, schema=WIKI_SCHEMA)
        write_part(self.folder, table, f"{self.prefix}-{self.parts:05d}.parquet")
        self.buffer = []

    def close_spider(self) -> None:
        self.flush()
