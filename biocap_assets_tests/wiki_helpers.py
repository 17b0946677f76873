"""Shared by the wiki crawl tests: hand-made pages and running the worker for real."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from biocap_assets.demo.wiki_server import WikiPage
from biocap_assets.scraping.state import latest_per_taxon, list_parts, read_parts
from biocap_assets.workers.runtime import ERROR_FILE_ENV

RANK_NAMES = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
CONTACT = "ops@example.org"


def page_html(ranks: dict[str, str] | None, sections: dict[str, str], lead: str = "Lead."):
    box = ""
    if ranks:
        rows = "".join(f"<tr><td>{r.capitalize()}:</td><td>{v}</td></tr>" for r, v in ranks.items())
        box = f'<table class="infobox biota"><tbody>{rows}</tbody></table>'
    body = "".join(
        f'<div class="mw-heading mw-heading2"><h2>{h}</h2></div><p>{t}</p>'
        for h, t in sections.items()
    )
    return f'<div class="mw-parser-output">{box}<p>{lead}</p>{body}</div>'


def taxon(taxon_id: str, ranks: str, ambiguous: bool = False) -> dict:
    values = dict(zip(RANK_NAMES, ranks.split(), strict=True))
    return {
        "taxon_id": taxon_id,
        "binomial": f"{values['genus']} {values['species']}",
        **values,
        "is_ambiguous": ambiguous,
    }


def make_pages(entries: list[tuple[str, dict | None, dict, bool]]) -> list[WikiPage]:
    return [
        WikiPage(100 + i, title, page_html(ranks, sections), disambiguation)
        for i, (title, ranks, sections, disambiguation) in enumerate(entries)
    ]


def run_worker(
    tmp: Path, taxa: list[dict], api_url: str, options: dict, timeout: float = 120
) -> dict:
    todo = tmp / f"todo-{len(list(tmp.glob('todo-*')))}.parquet"
    pq.write_table(pa.Table.from_pylist(taxa), todo)
    command = [
        sys.executable,
        "-m",
        "biocap_assets.workers.wiki",
        "--todo",
        str(todo),
        "--parts",
        str(tmp / "parts"),
        "--api-url",
        api_url,
        "--contact",
        CONTACT,
        "--options",
        json.dumps(options),
    ]
    env = {k: v for k, v in os.environ.items() if k != ERROR_FILE_ENV}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout[done.stdout.index("{") :])


def rows_by_id(parts_dir: Path) -> dict[str, dict]:
    table = latest_per_taxon(read_parts(list_parts(UPath(parts_dir))))
    return {r["taxon_id"]: r for r in table.to_pylist()}
