"""MediaWiki answers that are too large or of a shape nobody foresaw: each concerned taxon
ends as an error row with its reason, the rest of the crawl goes on, and no taxon is
silently dropped (the real worker against a MediaWiki-shaped server on 127.0.0.1)."""

import json

import pytest

from biocap_assets.demo.wiki_server import Fault, MediaWikiServer
from biocap_assets_tests.wiki_helpers import make_pages, rows_by_id, run_worker, taxon

VISUAL = {"Description": "It is green with narrow leaves."}
# a page whose answer each fault replaces; the last one is served as it is
NAMES = {
    "huge": "Hugus maximus",
    "props_number": "Numerus proprius",
    "parse_list": "Listus parsus",
    "text_number": "Textus numerus",
    "fine": "Normalis pagina",
}
PAGES = make_pages([(title, None, VISUAL, False) for title in NAMES.values()])
TAXA = [
    taxon(key, f"Animalia A B C D {title.split()[0]} {title.split()[1]}")
    for key, title in NAMES.items()
]
BAD_PARSE = {
    "Numerus proprius": {"parse": {"title": "x", "pageid": 1, "text": "<p>x</p>", "properties": 5}},
    "Listus parsus": {"parse": ["not", "an", "object"]},
    "Textus numerus": {"parse": {"title": "x", "pageid": 1, "text": 12}},
}


def faults(params, attempt):
    page = params.get("page", "")
    if page == "Hugus maximus":  # 96 kB of valid JSON, above the 64 kB cap set below
        html = "<p>" + "leaf " * 19_200 + "</p>"
        return Fault(
            body=json.dumps({"parse": {"title": page, "pageid": 1, "text": html}}).encode()
        )
    if page in BAD_PARSE:
        return Fault(body=json.dumps(BAD_PARSE[page]).encode())
    return None


OPTIONS = {
    "timeout": 5.0,
    "retry_times": 0,
    "autothrottle": False,
    "max_response_bytes": 64 * 1024,
}


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    with MediaWikiServer(PAGES, fault=faults) as server:
        report = run_worker(tmp, TAXA, server.api_url, OPTIONS)
    return report, rows_by_id(tmp / "parts")


def test_every_taxon_ends_as_a_row(crawl):
    report, rows = crawl
    assert report["items"] == len(TAXA) and set(rows) == set(NAMES)
    assert rows["fine"]["status"] == "found"


def test_an_answer_above_the_cap_is_an_error_for_its_taxon(crawl):
    _, rows = crawl
    assert rows["huge"]["status"] == "error"
    # the demo server gzips: the cap holds for the decompressed body (no gzip bomb either)
    assert "Hugus+maximus" in rows["huge"]["reason"]
    assert "exceeded DOWNLOAD_MAXSIZE (65536 B) during decompression" in rows["huge"]["reason"]


@pytest.mark.parametrize("key", ["props_number", "parse_list", "text_number"])
def test_an_answer_of_an_unexpected_shape_is_an_error_with_its_reason(crawl, key):
    _, rows = crawl
    assert rows[key]["status"] == "error", rows[key]
    assert NAMES[key] in rows[key]["reason"], rows[key]
    assert "answer" in rows[key]["reason"], rows[key]


def test_a_titles_answer_of_an_unexpected_shape_errs_the_whole_batch_not_the_crawl(tmp_path):
    def odd_titles(params, attempt):
        if params.get("titles"):
            return Fault(body=b'{"query": {"pages": "abc", "redirects": [{"from": 1}]}}')
        return None

    with MediaWikiServer(PAGES, fault=odd_titles) as server:
        report = run_worker(tmp_path, TAXA, server.api_url, OPTIONS)
    rows = rows_by_id(tmp_path / "parts")
    assert report["items"] == len(TAXA) and set(rows) == set(NAMES)


def test_a_redirect_to_another_host_is_not_followed(tmp_path):
    """The crawler talks to the API's host only: an answer redirecting elsewhere (here the
    same server under another name, so a followed redirect would be seen) is an error for
    its taxon; the other taxa are crawled as usual."""

    def elsewhere(params, attempt):
        if params.get("page") == "Hugus maximus":
            return Fault(status=302, body=b"", headers={"Location": other + "&page=Hugus+maximus"})
        return None

    with MediaWikiServer(PAGES, fault=elsewhere) as server:
        other = server.api_url.replace("127.0.0.1", "localhost") + "?action=parse&format=json"
        report = run_worker(tmp_path, TAXA, server.api_url, OPTIONS)
    rows = rows_by_id(tmp_path / "parts")
    assert report["items"] == len(TAXA) and set(rows) == set(NAMES)
    assert rows["huge"]["status"] == "error", rows["huge"]
    assert "is not the API's host 127.0.0.1" in rows["huge"]["reason"], rows["huge"]
    assert rows["fine"]["status"] == "found"
