"""The MediaWiki Action API calls the crawler makes, and parsing of their answers.

Pure functions: URLs in, JSON out. Every URL carries ``maxlag`` (the API refuses
work while its replicas lag, asking clients to retry later) and uses
``formatversion=2`` (plain JSON lists and booleans).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlencode

MAX_TITLES_PER_QUERY = 50


class ApiError(ValueError):
    """The API answered, but not with what the call asks for."""


def _url(api: str, maxlag: int | None, **params: object) -> str:
    query = {**params, "format": "json", "formatversion": 2}
    if maxlag is not None:
        query["maxlag"] = maxlag
    return f"{api}?{urlencode(query)}"


def titles_url(api: str, titles: list[str], maxlag: int | None = 5) -> str:
    if not 0 < len(titles) <= MAX_TITLES_PER_QUERY:
        raise ValueError(f"1 to {MAX_TITLES_PER_QUERY} titles per query, got {len(titles)}")
    return _url(
        api,
        maxlag,
        action="query",
        titles="|".join(titles),
        redirects=1,
        prop="pageprops",
        ppprop="disambiguation",
    )


def search_url(api: str, text: str, limit: int = 3, maxlag: int | None = 5) -> str:
    return _url(
        api,
        maxlag,
        action="query",
        list="search",
        srsearch=text,
        srlimit=limit,
        srnamespace=0,
        srprop="",
    )


def parse_url(api: str, title: str, maxlag: int | None = 5) -> str:
    """Parse a page by title, following redirects (search hits are titles)."""
    return _url(
        api,
        maxlag,
        action="parse",
        page=title,
        redirects=1,
        prop="text|properties",
        disabletoc=1,
        disableeditsection=1,
    )


def page_url(api: str, title: str) -> str:
    """The human URL of a page: ``.../w/api.php`` becomes ``.../wiki/Title``."""
    base = api.rsplit("/w/api.php", 1)[0] if "/w/api.php" in api else api.rsplit("/", 1)[0]
    return f"{base}/wiki/{title.replace(' ', '_')}"


def load_json(body: bytes | str, call: str) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(f"malformed JSON from {call}: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(f"{call} answered {type(data).__name__}, not an object")
    if "error" in data:
        error = data["error"] if isinstance(data["error"], dict) else {"info": data["error"]}
        raise ApiError(f"{call} error {error.get('code', '?')}: {error.get('info', '')}")
    return data


@dataclass(frozen=True)
class PageRef:
    pageid: int
    title: str
    disambiguation: bool = False


@dataclass
class TitleResolution:
    """Which page each asked title leads to (None: no such page)."""

    pages: dict[str, PageRef | None] = field(default_factory=dict)
    redirected: dict[str, str] = field(default_factory=dict)


def parse_titles(data: dict, asked: list[str]) -> TitleResolution:
    """Follow ``normalized`` then ``redirects`` from each asked title to its page."""
    query = data.get("query")
    if not isinstance(query, dict):
        raise ApiError("action=query answer has no 'query' object")
    hops: dict[str, str] = {}
    for key in ("normalized", "redirects"):
        for hop in query.get(key) or []:
            hops[hop["from"]] = hop["to"]
    by_title: dict[str, PageRef | None] = {}
    for page in query.get("pages") or []:
        if page.get("missing") or page.get("invalid") or "pageid" not in page:
            by_title[page.get("title", "")] = None
            continue
        props = page.get("pageprops") or {}
        by_title[page["title"]] = PageRef(
            int(page["pageid"]), page["title"], "disambiguation" in props
        )
    resolution = TitleResolution()
    for title in asked:
        current, seen = title, set()
        while current in hops and current not in seen:
            seen.add(current)
            current = hops[current]
        if current != title:
            resolution.redirected[title] = current
        resolution.pages[title] = by_title.get(current)
    return resolution


def parse_search(data: dict) -> list[str]:
    query = data.get("query")
    if not isinstance(query, dict) or not isinstance(query.get("search"), list):
        raise ApiError("list=search answer has no 'query.search' list")
    return [hit["title"] for hit in query["search"] if "title" in hit]


@dataclass(frozen=True)
class ParsedPage:
    pageid: int
    title: str
    html: str
    disambiguation: bool


def parse_parse(data: dict) -> ParsedPage:
    parse = data.get("parse")
    if not isinstance(parse, dict) or not isinstance(parse.get("text"), str):
        raise ApiError("action=parse answer has no 'parse.text' string")
    props = parse.get("properties") or {}
    if isinstance(props, list):  # formatversion=1 shape
        props = {p.get("name"): p.get("*") for p in props}
    return ParsedPage(
        int(parse.get("pageid", 0)),
        parse.get("title", ""),
        parse["text"],
        "disambiguation" in props,
    )
