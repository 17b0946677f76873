"""Wikipedia lookup with Scrapy: what to fetch (spider), parsing (pure functions),
where it goes (pipelines), and how politely (settings, middlewares)."""
