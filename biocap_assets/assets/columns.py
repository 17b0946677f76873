"""What each column of the platform's tables means: the assets' ``dagster/column_schema``
definition metadata, which the table IO manager merges into the schema it records at each
materialization (types from the data, descriptions from here), so the UI shows both."""

import dagster as dg

from biocap_assets.taxonomy.names import RANKS

_RANK_DOCS = {rank: f"the taxon's {rank} (TreeOfLife-10M's spelling)" for rank in RANKS}


def _schema(columns: dict[str, tuple[str, str]]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, kind, description=doc) for name, (kind, doc) in columns.items()
        ]
    )


_TAXON = {
    "taxon_id": (
        "VARCHAR",
        "stable id of the taxon: md5 of its seven normalised ranks, 16 hex digits",
    ),
    "binomial": ("VARCHAR", "genus and species, when both are known"),
    **{rank: ("VARCHAR", doc) for rank, doc in _RANK_DOCS.items()},
}

TAXA = _schema(
    {
        **_TAXON,
        "common_name": ("VARCHAR", "the most frequent common name in the catalog"),
        "common_names": ("VARCHAR[]", "every common name, most frequent first"),
        "n_images": ("BIGINT", "catalog rows (images) of the taxon"),
        "is_ambiguous": ("BOOLEAN", "the binomial also names a taxon of another kingdom"),
    }
)
WIKI_PAGES = _schema(
    {
        **_TAXON,
        "page_id": ("BIGINT", "MediaWiki page id"),
        "title": ("VARCHAR", "page title after redirects"),
        "url": ("VARCHAR", "the page's address"),
        "headings": ("VARCHAR[]", "section headings kept"),
        "text": ("VARCHAR", "plain text of the visual sections (or the lead)"),
        "text_is_lead": ("BOOLEAN", "no visual section: the text is the whole lead"),
        "status": ("VARCHAR", "found, no_visual_section, no_page, disambiguation or error"),
        "reason": ("VARCHAR", "why there is no text (status other than found)"),
        "fetched_at": ("TIMESTAMP WITH TIME ZONE", "when the page was fetched"),
    }
)
VISUAL_DESCRIPTIONS = _schema(
    {
        **_TAXON,
        "description": ("VARCHAR", "what the taxon looks like, as the LLM filtered it"),
        "status": ("VARCHAR", "ok, empty (no visual information), no_text or error"),
        "reason": ("VARCHAR", "why there is no description"),
        "backend": ("VARCHAR", "inference backend (cpu, vllm, openai)"),
        "model": ("VARCHAR", "model that filtered the text"),
        "source_chars": ("BIGINT", "characters of Wikipedia text given to the model"),
    }
)
SHARD_STATS = _schema(
    {
        "samples": ("BIGINT", "samples in the input shard"),
        "captioned": ("BIGINT", "samples given a caption"),
        "skipped": ("BIGINT", "samples kept without a caption (all reasons)"),
        "no_image": ("BIGINT", "samples without an image member"),
        "bad_image": ("BIGINT", "samples whose image failed the check_images test"),
        "no_taxon": ("BIGINT", "samples whose texts name no taxon"),
        "failed": ("BIGINT", "samples whose generation failed"),
        "mean_caption_words": ("DOUBLE", "mean words per caption"),
        "bytes_in": ("BIGINT", "size of the input shard"),
        "seconds": ("DOUBLE", "the worker's own time: read, caption, write"),
        "backend": ("VARCHAR", "captioning backend"),
        "model": ("VARCHAR", "captioning model"),
        "prompt": ("VARCHAR", "name of the caption prompt"),
        "prompt_sha256": ("VARCHAR", "hash of the prompt's text"),
        "examples_class": ("BIGINT", "samples prompted with their class's format examples"),
        "examples_fallback": ("BIGINT", "samples prompted with fallback format examples"),
        "generation": ("VARCHAR", "sampling parameters (JSON)"),
        "sha256": ("VARCHAR", "hash of the output shard"),
        "shard": ("VARCHAR", "output shard's file name"),
        "input_url": ("VARCHAR", "the input tar"),
        "output_url": ("VARCHAR", "the captioned tar"),
        "partition_key": ("VARCHAR", "the Dagster partition (the shard's number)"),
    }
)


def column_metadata(schema: dg.TableSchema) -> dict:
    return {"dagster/column_schema": schema}
