"""End-to-end crawls by the real worker against a MediaWiki-shaped server on 127.0.0.1."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from upath import UPath

from biocap_assets.demo.wiki_server import Fault, MediaWikiServer
from biocap_assets.scraping.state import latest_per_taxon, list_parts, plan_crawl, read_parts
from biocap_assets_tests.wiki_helpers import (
    CONTACT,
    make_pages,
    rows_by_id,
    run_worker,
    taxon,
)

PLANT = {"kingdom": "Plantae", "class": "Liliopsida", "family": "Poaceae"}
CLAM = {"kingdom": "Animalia", "class": "Bivalvia", "family": "Astartidae"}
VISUAL = {"Description": "It is green with narrow leaves."}

PAGES = make_pages(
    [
        (
            "Cardinalis cardinalis",
            {"kingdom": "Animalia", "class": "Aves"},
            {"Description": "The male is red."},
            False,
        ),
        (
            "Eastern tiger swallowtail",
            {"kingdom": "Animalia"},
            {"Appearance": "Yellow, striped."},
            False,
        ),
        ("Mercurialis ambigua", None, {"See also": "Mercurialis ambigua may refer to two."}, True),
        ("Digitaria sanguinalis", PLANT, {"Description": "A grass with purple spikelets."}, False),
        (
            "Digitaria sanguinalis (bivalve)",
            CLAM,
            {"Description": "A tiny red shell, Digitaria sanguinalis of the Bivalvia."},
            False,
        ),
        ("Ratelimita exempla", None, VISUAL, False),
        ("Flaky flaky", None, VISUAL, False),
        ("Slowpoke lentus", None, VISUAL, False),
        ("Garbled textus", None, VISUAL, False),
        ("Plainus pageus", None, {"Habitat": "Lives in ponds."}, False),
    ]
)
REDIRECTS = {"Papilio glaucus": "Eastern tiger swallowtail"}

TAXA = [
    taxon("cardinal", "Animalia Chordata Aves Passeriformes Cardinalidae Cardinalis cardinalis"),
    taxon("swallowtail", "Animalia Arthropoda Insecta Lepidoptera Papilionidae Papilio glaucus"),
    taxon(
        "disambig",
        "Plantae Tracheophyta Magnoliopsida Malpighiales Euphorbiaceae Mercurialis ambigua",
    ),
    taxon("grass", "Plantae Tracheophyta Liliopsida Poales Poaceae Digitaria sanguinalis", True),
    taxon("clam", "Animalia Mollusca Bivalvia Carditida Astartidae Digitaria sanguinalis", True),
    taxon("ratelimited", "Animalia A B C D Ratelimita exempla"),
    taxon("flaky", "Animalia A B C D Flaky flaky"),
    taxon("slow", "Animalia A B C D Slowpoke lentus"),
    taxon("garbled", "Animalia A B C D Garbled textus"),
    taxon("nopage", "Animalia A B C D Nullus paginus"),
    taxon("plain", "Animalia A B C D Plainus pageus"),
]
OPTIONS = {
    "timeout": 1.0,
    "retry_times": 2,
    "backoff_base": 0.05,
    "autothrottle": False,
    "flush_every": 3,
    "progress_every": 5,
}


def faults(params, attempt):
    page = params.get("page", "")
    if params.get("titles") and attempt == 1:
        return Fault(
            body=b'{"error": {"code": "maxlag", "info": "Waiting for db: 6 s lagged"}}',
            headers={"Retry-After": "1", "X-Database-Lag": "6"},
        )
    if page == "Ratelimita exempla" and attempt == 1:
        return Fault(status=429, body=b"Too many requests", headers={"Retry-After": "1"})
    if page == "Flaky flaky" and attempt == 1:
        return Fault(status=503, body=b"Service Unavailable")
    if page == "Slowpoke lentus":
        return Fault(delay=2.5)
    if page == "Garbled textus":
        return Fault(body=b'{"parse": {"title": "Garbled textus", "text": <html')
    return None


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crawl")
    with MediaWikiServer(PAGES, REDIRECTS, fault=faults) as server:
        report = run_worker(tmp, TAXA, server.api_url, OPTIONS)
        log = list(server.log)
    return report, rows_by_id(tmp / "parts"), log


def test_statuses_and_reasons(crawl):
    report, rows, _ = crawl
    status = {k: r["status"] for k, r in rows.items()}
    assert status == {
        "cardinal": "found",
        "swallowtail": "found",
        "disambig": "disambiguation",
        "grass": "found",
        "clam": "found",
        "ratelimited": "found",
        "flaky": "found",
        "slow": "error",
        "garbled": "error",
        "nopage": "no_page",
        "plain": "no_visual_section",
    }
    assert rows["swallowtail"]["title"] == "Eastern tiger swallowtail"
    assert rows["swallowtail"]["url"].endswith("/wiki/Eastern_tiger_swallowtail")
    assert rows["cardinal"]["headings"] == ["Description"]
    assert rows["cardinal"]["text"] == "The male is red."
    assert rows["clam"]["title"] == "Digitaria sanguinalis (bivalve)"
    assert rows["grass"]["title"] == "Digitaria sanguinalis"
    assert "disambiguation page" in rows["disambig"]["reason"]
    assert "Timeout" in rows["slow"]["reason"]
    assert "malformed JSON" in rows["garbled"]["reason"]
    assert "no page titled 'Nullus paginus'" in rows["nopage"]["reason"]
    assert rows["plain"]["text"] == "Lead." and rows["plain"]["text_is_lead"]
    assert report["items"] == len(TAXA) and report["finish_reason"] == "finished"


def test_retry_after_is_honoured_for_429_and_maxlag(crawl):
    report, _, log = crawl
    attempts = [r for r in log if r.params.get("page") == "Ratelimita exempla"]
    assert [r.status for r in attempts] == [429, 200]
    assert attempts[1].received - attempts[0].received >= 0.95
    titles = [r for r in log if "titles" in r.params]
    assert len(titles) == 2 and titles[1].received - titles[0].received >= 0.95
    assert report["responses_429"] == 1 and report["retries"] >= 3


def test_a_page_is_parsed_once_for_two_taxa(crawl):
    _, _, log = crawl
    parses = [r.params["page"] for r in log if r.params.get("action") == "parse"]
    assert parses.count("Digitaria sanguinalis") == 1


def test_user_agent_and_maxlag_on_every_request(crawl):
    _, _, log = crawl
    assert log
    for request in log:
        assert request.params["maxlag"] == "5"
        agent = request.headers["User-Agent"]
        assert agent.startswith("biocap/") and CONTACT in agent
        assert "gzip" in request.headers.get("Accept-Encoding", "")


def test_live_api_needs_a_contact(tmp_path):
    pq.write_table(pa.Table.from_pylist(TAXA[:1]), tmp_path / "todo.parquet")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "biocap_assets.workers.wiki",
            "--todo",
            str(tmp_path / "todo.parquet"),
            "--parts",
            str(tmp_path / "parts"),
            "--api-url",
            "https://en.wikipedia.org/w/api.php",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "BIOCAP_WIKI_CONTACT" in done.stderr
    assert not (tmp_path / "parts").exists()


@pytest.mark.slow
def test_a_stopped_crawl_resumes_without_fetching_a_page_twice(tmp_path):
    names = [f"Speciesa number{i:03d}" for i in range(60)]
    pages = make_pages([(n, None, VISUAL, False) for n in names])
    taxa = [taxon(f"t{i:03d}", f"Animalia A B C D {n}") for i, n in enumerate(names)]
    options = {**OPTIONS, "flush_every": 5}
    with MediaWikiServer(pages, latency=0.05) as server:
        pq.write_table(pa.Table.from_pylist(taxa), tmp_path / "todo.parquet")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "biocap_assets.workers.wiki",
                "--todo",
                str(tmp_path / "todo.parquet"),
                "--parts",
                str(tmp_path / "parts"),
                "--api-url",
                server.api_url,
                "--contact",
                CONTACT,
                "--options",
                json.dumps(options),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while sum(r.params.get("action") == "parse" for r in server.log) < 20:
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.02)
        worker.send_signal(signal.SIGTERM)  # Scrapy shuts down gracefully and flushes
        worker.communicate(timeout=60)
        first = [r.params["page"] for r in server.log if r.params.get("action") == "parse"]
        kept = latest_per_taxon(read_parts(list_parts(UPath(tmp_path / "parts"))))
        assert 0 < kept.num_rows < len(taxa), "the first crawl was stopped halfway"

        todo = plan_crawl(pa.Table.from_pylist(taxa), kept)
        run_worker(tmp_path, todo.to_pylist(), server.api_url, options)
        parses = [r.params["page"] for r in server.log if r.params.get("action") == "parse"]
    second = parses[len(first) :]
    rows = rows_by_id(tmp_path / "parts")
    assert sorted(rows) == sorted(t["taxon_id"] for t in taxa)
    assert all(r["status"] == "found" for r in rows.values())
    kept_titles = {r["title"] for r in kept.to_pylist()}
    assert not kept_titles & set(second), "a page kept by the first crawl was fetched again"
    assert len(parses) - len(set(parses)) <= 2, "at most the requests in flight at the stop"
    assert os.path.isdir(tmp_path / "parts")
