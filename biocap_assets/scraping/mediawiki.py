"""The MediaWiki Action API calls the crawler makes, and parsing of their answers.

Pure functions: URLs in, JSON out. Every URL carries ``maxlag`` (the API refuses
work while its replicas lag, asking clients to retry later) and asks for
``formatversion=2`` (plain JSON lists and booleans). Answers in the older
``formatversion=1`` shape (pages keyed by id, ``"missing": ""``, ``{"*": text}``), which
proxies and older wikis send, are read alike; a malformed entry costs only that entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

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
    """The human URL of a page: ``.../w/api.php`` becomes ``.../wiki/Title``; credentials
    in the API URL are not part of it (the URL is data, kept in a table)."""
    parts = urlsplit(api)
    if parts.username is not None or parts.password is not None:
        api = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
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


def _entries(value) -> list:
    """A list of answer entries, whether the API sent a list (v2) or an object (v1)."""
    if isinstance(value, dict):
        return list(value.values())
    return value if isinstance(value, list) else []


def _flag(entry: dict, name: str) -> bool:
    """v2 sends ``"missing": true``, v1 ``"missing": ""``: presence is what counts."""
    return name in entry and entry[name] is not False


def parse_titles(data: dict, asked: list[str]) -> TitleResolution:
    """Follow ``normalized`` then ``redirects`` from each asked title to its page."""
    query = data.get("query")
    if not isinstance(query, dict):
        raise ApiError("action=query answer has no 'query' object")
    hops: dict[str, str] = {}
    for key in ("normalized", "redirects"):
        for hop in _entries(query.get(key)):
            if isinstance(hop, dict) and isinstance(hop.get("from"), str) and hop.get("to"):
                hops[hop["from"]] = str(hop["to"])
    by_title: dict[str, PageRef | None] = {}
    for page in _entries(query.get("pages")):
        if not isinstance(page, dict) or not isinstance(page.get("title"), str):
            continue  # a malformed entry: its title resolves to nothing, the rest go on
        if _flag(page, "missing") or _flag(page, "invalid") or "pageid" not in page:
            by_title[page["title"]] = None
            continue
        props = page.get("pageprops") if isinstance(page.get("pageprops"), dict) else {}
        try:
            by_title[page["title"]] = PageRef(
                int(page["pageid"]), page["title"], "disambiguation" in props
            )
        except (TypeError, ValueError):
            by_title[page["title"]] = None
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
    if not isinstance(query, dict) or not isinstance(query.get("search"), list | dict):
        raise ApiError("list=search answer has no 'query.search' list")
    return [
        hit["title"]
        for hit in _entries(query["search"])
        if isinstance(hit, dict) and isinstance(hit.get("title"), str)
    ]


@dataclass(frozen=True)
class ParsedPage:
    pageid: int
    title: str
    html: str
    disambiguation: bool


def parse_parse(data: dict) -> ParsedPage:
    parse = data.get("parse")
    text = parse.get("text") if isinstance(parse, dict) else None
    if isinstance(text, dict):  # formatversion=1: {"*": html}
        text = text.get("*")
    if not isinstance(text, str):
        raise ApiError("action=parse answer has no 'parse.text' string")
    props = parse.get("properties") or {}
    if isinstance(props, list):  # formatversion=1 shape
        props = {p.get("name"): p.get("*") for p in props if isinstance(p, dict)}
    try:
        pageid = int(parse.get("pageid", 0))
    except (TypeError, ValueError) as exc:
        raise ApiError(f"action=parse answer has a bad pageid {parse.get('pageid')!r}") from exc
    return ParsedPage(pageid, str(parse.get("title", "")), text, "disambiguation" in props)
