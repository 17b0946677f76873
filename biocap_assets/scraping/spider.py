"""What the crawler fetches, and in which order.

For every taxon the spider emits exactly one item (status found, no_page,
no_visual_section, disambiguation or error). Titles are resolved 50 at a time
(``action=query`` with redirects); a page is parsed once however many taxa
point at it; a miss, a disambiguation page or, for an ambiguous binomial, a
taxobox that does not match the taxon's ranks falls back to ``list=search``
and tries its hits in order.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlparse

import scrapy
from scrapy.http import Response
from twisted.python.failure import Failure

from biocap_assets.scraping import mediawiki as api
from biocap_assets.scraping.sections import (
    VISUAL_KEYWORDS,
    extract_sections,
    is_disambiguation_html,
    ranks_match,
    taxobox_ranks,
)
from biocap_assets.taxonomy.names import RANKS

PAGE_CACHE_SIZE = 20_000


@dataclass
class Taxon:
    taxon_id: str
    binomial: str
    ranks: dict[str, str]
    is_ambiguous: bool
    searched: bool = False
    tried: set[str] = field(default_factory=set)
    candidates: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    saw_disambiguation: bool = False


@dataclass
class PageInfo:
    pageid: int
    title: str
    disambiguation: bool
    headings: list[str]
    text: str
    lead: str
    box: dict[str, str]


class WikiSpider(scrapy.Spider):
    name = "biocap_wiki"

    def __init__(
        self,
        taxa: list[dict],
        api_url: str,
        keywords: tuple[str, ...] = (),
        keep_lead: bool = True,
        section_policy: str = "reference",
        maxlag: int | None = 5,
        progress: Callable[[int, int], None] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.taxa = [
            Taxon(
                t["taxon_id"],
                t["binomial"],
                {r: t.get(r) or "" for r in RANKS},
                bool(t.get("is_ambiguous")),
            )
            for t in taxa
        ]
        self.api_url = api_url
        # the one host the crawl talks to (middlewares.ApiHostOnlyMiddleware)
        self.api_host = urlparse(api_url).hostname or ""
        self.keywords = tuple(keywords) or VISUAL_KEYWORDS
        self.keep_lead = keep_lead
        self.section_policy = section_policy
        self.maxlag = maxlag
        self.progress = progress
        self.emitted = 0
        self.status_counts: Counter[str] = Counter()
        # Parsed pages by every title that led to them; bounded, since a real crawl sees
        # ~450k pages and only needs a page again when another taxon points at it soon.
        self._pages: OrderedDict[str, PageInfo] = OrderedDict()
        self._waiting: dict[str, list[Taxon]] = {}  # parse requests in flight, by title

    # -- requests ---------------------------------------------------------------

    async def start(self) -> AsyncIterator[scrapy.Request]:
        batch_size = api.MAX_TITLES_PER_QUERY
        for i in range(0, len(self.taxa), batch_size):
            batch = self.taxa[i : i + batch_size]
            titles = sorted({t.binomial for t in batch})
            yield scrapy.Request(
                api.titles_url(self.api_url, titles, self.maxlag),
                callback=self.on_titles,
                errback=self.on_failure,
                cb_kwargs={"batch": batch, "titles": titles},
                dont_filter=True,
            )

    def _parse_request(self, title: str) -> scrapy.Request:
        url = api.parse_url(self.api_url, title, self.maxlag)
        return scrapy.Request(
            url,
            callback=self.on_parse,
            errback=self.on_failure,
            cb_kwargs={"title": title},
            dont_filter=True,
        )

    def _search_request(self, taxon: Taxon) -> scrapy.Request:
        text = taxon.binomial
        if taxon.is_ambiguous and taxon.ranks.get("class"):
            text = f"{taxon.binomial} {taxon.ranks['class']}"
        return scrapy.Request(
            api.search_url(self.api_url, text, maxlag=self.maxlag),
            callback=self.on_search,
            errback=self.on_failure,
            cb_kwargs={"taxon": taxon},
            dont_filter=True,
        )

    def want_page(self, taxon: Taxon, title: str):
        """Evaluate ``title`` for ``taxon``, parsing it unless known or in flight."""
        taxon.tried.add(title)
        if title in self._pages:
            yield from self.evaluate(taxon, self._pages[title])
        elif title in self._waiting:
            self._waiting[title].append(taxon)
        else:
            self._waiting[title] = [taxon]
            yield self._parse_request(title)

    def next_candidate(self, taxon: Taxon, reason: str):
        """Try the next search hit, search if not done yet, else give the final status."""
        if reason:
            taxon.rejections.append(reason)
        while taxon.candidates:
            title = taxon.candidates.pop(0)
            if title not in taxon.tried:
                yield from self.want_page(taxon, title)
                return
        if not taxon.searched:
            taxon.searched = True
            yield self._search_request(taxon)
            return
        status = (
            "disambiguation" if taxon.saw_disambiguation and not taxon.is_ambiguous else "no_page"
        )
        yield self.item(taxon, status, reason="; ".join(taxon.rejections))

    # -- callbacks --------------------------------------------------------------

    def on_titles(self, response: Response, batch: list[Taxon], titles: list[str]):
        try:
            data = api.load_json(response.body, "action=query titles")
            resolution = api.parse_titles(data, titles)
        except Exception as exc:  # noqa: BLE001 - see _unexpected
            exc = _unexpected(exc)
            for taxon in batch:
                yield self.item(taxon, "error", reason=str(exc))
            return
        for taxon in batch:
            ref = resolution.pages.get(taxon.binomial)
            if ref is None:
                yield from self.next_candidate(taxon, f"no page titled {taxon.binomial!r}")
            elif ref.disambiguation:
                taxon.saw_disambiguation = True
                taxon.tried.add(ref.title)
                yield from self.next_candidate(taxon, f"{ref.title!r} is a disambiguation page")
            else:
                yield from self.want_page(taxon, ref.title)

    def on_search(self, response: Response, taxon: Taxon):
        try:
            hits = api.parse_search(api.load_json(response.body, "list=search"))
        except Exception as exc:  # noqa: BLE001 - see _unexpected
            exc = _unexpected(exc)
            yield self.item(taxon, "error", reason=str(exc))
            return
        taxon.candidates = [h for h in hits if h not in taxon.tried]
        if taxon.candidates:
            reason = ""
        else:
            reason = "search found nothing" if not hits else "search found no other page"
        yield from self.next_candidate(taxon, reason)

    def on_parse(self, response: Response, title: str):
        waiting = self._waiting.pop(title, [])
        try:
            page = api.parse_parse(api.load_json(response.body, "action=parse"))
            sections = extract_sections(page.html, self.keywords, self.section_policy)
            info = PageInfo(
                page.pageid,
                page.title,
                page.disambiguation or is_disambiguation_html(page.html),
                sections.headings,
                sections.text,
                sections.lead,
                taxobox_ranks(page.html),
            )
        except Exception as exc:  # noqa: BLE001 - see _unexpected
            exc = _unexpected(exc)
            for taxon in waiting:
                yield self.item(taxon, "error", reason=f"{title!r}: {exc}")
            return
        for key in {title, info.title}:
            self._pages[key] = info
            self._pages.move_to_end(key)
        while len(self._pages) > PAGE_CACHE_SIZE:
            self._pages.popitem(last=False)
        for taxon in waiting:
            yield from self.evaluate(taxon, info)

    def on_failure(self, failure: Failure):
        request = failure.request
        kwargs = request.cb_kwargs
        reason = f"{failure.type.__name__}: {failure.getErrorMessage()}"[:500]
        if "batch" in kwargs:
            affected = kwargs["batch"]
        elif "title" in kwargs:
            affected = self._waiting.pop(kwargs["title"], [])
        else:
            affected = [kwargs["taxon"]]
        for taxon in affected:
            yield self.item(taxon, "error", reason=f"{request.url[:200]}: {reason}")

    # -- decisions --------------------------------------------------------------

    def evaluate(self, taxon: Taxon, info: PageInfo):
        if info.disambiguation:
            taxon.saw_disambiguation = True
            yield from self.next_candidate(taxon, f"{info.title!r} is a disambiguation page")
            return
        if taxon.is_ambiguous:
            ok, why = ranks_match(taxon.ranks, info.box)
            if not ok:
                yield from self.next_candidate(taxon, f"{info.title!r}: {why}")
                return
        if info.text:
            yield self.item(taxon, "found", info, info.text)
        else:
            lead = info.lead if self.keep_lead else ""
            yield self.item(
                taxon,
                "no_visual_section",
                info,
                lead,
                text_is_lead=bool(lead),
                reason="no heading with a visual keyword",
            )

    def item(
        self,
        taxon: Taxon,
        status: str,
        info: PageInfo | None = None,
        text: str = "",
        text_is_lead: bool = False,
        reason: str = "",
    ) -> dict:
        self.emitted += 1
        self.status_counts[status] += 1
        if self.progress is not None:
            self.progress(self.emitted, len(self.taxa))
        return {
            "taxon_id": taxon.taxon_id,
            "binomial": taxon.binomial,
            **taxon.ranks,
            "page_id": info.pageid if info else None,
            "title": info.title if info else None,
            "url": api.page_url(self.api_url, info.title) if info else None,
            "headings": info.headings if info else [],
            "text": text,
            "text_is_lead": text_is_lead,
            "status": status,
            "reason": reason,
            "fetched_at": datetime.now(UTC),
        }


def _unexpected(exc: Exception) -> Exception:
    """An answer of a shape we did not foresee is an error for the taxa it concerns, with
    its reason; never an exception that Scrapy would log while dropping those taxa."""
    if isinstance(exc, api.ApiError | ValueError):
        return exc
    return api.ApiError(f"unexpected answer ({type(exc).__name__}: {exc})")
