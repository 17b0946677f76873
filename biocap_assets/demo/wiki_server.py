"""A MediaWiki-Action-API-shaped HTTP server over a folder of pages, on loopback.

It answers the three calls the crawler makes (``action=query`` with titles and
redirects, ``list=search``, ``action=parse``) in the shapes the real API gives
with ``formatversion=2``. The demo serves its offline wiki with it so the crawl
needs no network; tests and the benchmark add latency and faults (status codes,
``Retry-After``, stalls, malformed bodies) through ``fault``.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from biocap_assets.common.loopback import KeepAliveHandler, LoopbackServer


@dataclass
class Fault:
    """What to answer instead of the real response (None fields: as normal)."""

    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class WikiPage:
    pageid: int
    title: str
    html: str
    disambiguation: bool = False


@dataclass
class LoggedRequest:
    params: dict[str, str]
    headers: dict[str, str]
    status: int
    received: float  # time.monotonic() when the request arrived


def load_pages(wiki_dir: str | Path) -> tuple[list[WikiPage], dict[str, str]]:
    """Pages and redirects (from title -> to title) of a demo wiki folder."""
    wiki_dir = Path(wiki_dir)
    index = json.loads((wiki_dir / "index.json").read_text())
    pages, redirects = [], {}
    for entry in index:
        html = (wiki_dir / entry["file"]).read_text(encoding="utf-8")
        pages.append(WikiPage(entry["pageid"], entry["title"], html, entry["disambiguation"]))
        for source in entry["redirects_from"]:
            redirects[source] = entry["title"]
    return pages, redirects


def _normalise_title(title: str) -> str:
    title = title.replace("_", " ").strip()
    return title[:1].upper() + title[1:]


class MediaWikiServer(LoopbackServer):
    """Serve ``pages`` on 127.0.0.1 (a free port unless given) in a background thread."""

    def __init__(
        self,
        pages: list[WikiPage],
        redirects: dict[str, str] | None = None,
        latency: float = 0.0,
        fault: Callable[[dict[str, str], int], Fault | None] | None = None,
        port: int = 0,
    ):
        self.by_title = {p.title: p for p in pages}
        self.by_id = {p.pageid: p for p in pages}
        self.redirects = dict(redirects or {})
        self.latency = latency
        self.fault = fault
        self.log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        super().__init__(self._handler(), port)

    @classmethod
    def from_folder(cls, wiki_dir: str | Path, **kwargs) -> MediaWikiServer:
        pages, redirects = load_pages(wiki_dir)
        return cls(pages, redirects, **kwargs)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/w/api.php"

    # -- the API ---------------------------------------------------------------

    def answer(self, params: dict[str, str]) -> dict:
        action = params.get("action")
        if action == "query" and params.get("list") == "search":
            return self._search(params.get("srsearch", ""), int(params.get("srlimit", 10)))
        if action == "query" and "titles" in params:
            return self._titles(params["titles"].split("|"), params.get("redirects") == "1")
        if action == "parse" and "pageid" in params:
            return self._parse(self.by_id.get(int(params["pageid"])), params["pageid"])
        if action == "parse" and "page" in params:
            title = _normalise_title(params["page"])
            if params.get("redirects") == "1":
                title = self.redirects.get(title, title)
            return self._parse(self.by_title.get(title), title)
        return {"error": {"code": "badvalue", "info": f"unsupported call {params}"}}

    def _titles(self, titles: list[str], follow: bool) -> dict:
        normalized, redirects, pages = [], [], []
        for title in titles:
            norm = _normalise_title(title)
            if norm != title:
                normalized.append({"from": title, "to": norm})
            if follow and norm in self.redirects:
                redirects.append({"from": norm, "to": self.redirects[norm]})
                norm = self.redirects[norm]
            page = self.by_title.get(norm)
            if page is None:
                pages.append({"ns": 0, "title": norm, "missing": True})
            else:
                entry = {"pageid": page.pageid, "ns": 0, "title": page.title}
                if page.disambiguation:
                    entry["pageprops"] = {"disambiguation": ""}
                pages.append(entry)
        query: dict = {"pages": pages}
        if normalized:
            query["normalized"] = normalized
        if redirects:
            query["redirects"] = redirects
        return {"batchcomplete": True, "query": query}

    def _search(self, text: str, limit: int) -> dict:
        words = [w for w in re.findall(r"\w+", text.lower()) if len(w) > 2]
        scored = []
        for page in self.by_title.values():
            haystack = f"{page.title} {page.html}".lower()
            score = sum(haystack.count(w) for w in words)
            if score and all(w in haystack for w in words):
                scored.append((-score, page.pageid, page.title))
        hits = [{"ns": 0, "title": t} for _, _, t in sorted(scored)[:limit]]
        return {
            "batchcomplete": True,
            "query": {"searchinfo": {"totalhits": len(scored)}, "search": hits},
        }

    def _parse(self, page: WikiPage | None, asked: object) -> dict:
        if page is None:
            return {
                "error": {
                    "code": "missingtitle",
                    "info": f"The page you specified doesn't exist: {asked}",
                }
            }
        props = {"disambiguation": ""} if page.disambiguation else {}
        return {
            "parse": {
                "title": page.title,
                "pageid": page.pageid,
                "text": page.html,
                "properties": props,
            }
        }

    # -- HTTP ------------------------------------------------------------------

    def _handler(self) -> type[KeepAliveHandler]:
        server = self

        class Handler(KeepAliveHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                received = time.monotonic()
                params = {k: v[-1] for k, v in parse_qs(urlparse(self.path).query).items()}
                with server._lock:
                    attempt = sum(1 for r in server.log if r.params == params) + 1
                fault = server.fault(params, attempt) if server.fault else None
                time.sleep(server.latency + (fault.delay if fault else 0.0))
                if fault is not None and fault.body is not None:
                    body = fault.body
                else:
                    body = json.dumps(server.answer(params)).encode()
                status = fault.status if fault else 200
                headers = {
                    "Content-Type": "application/json; charset=utf-8",
                    **(fault.headers if fault else {}),
                }
                if "gzip" in self.headers.get("Accept-Encoding", ""):
                    body = gzip.compress(body, mtime=0)
                    headers["Content-Encoding"] = "gzip"
                with server._lock:
                    server.log.append(
                        LoggedRequest(params, dict(self.headers.items()), status, received)
                    )
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        return Handler
