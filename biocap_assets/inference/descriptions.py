"""visual_descriptions as tables: which texts to filter, and the table the results make.

Pure functions over Arrow tables; the asset only launches the ``describe`` workers.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from biocap_assets.taxonomy.names import RANKS

OUTPUT_SCHEMA = pa.schema(
    [
        ("taxon_id", pa.string()),
        ("binomial", pa.string()),
        *[(r, pa.string()) for r in RANKS],
        ("description", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("backend", pa.string()),
        ("model", pa.string()),
        ("source_chars", pa.int64()),
    ]
)
STATUSES = ("ok", "empty", "error", "no_text")
RELEASED_MODEL = "TreeOfLife-10M-Captions"


def texts_to_describe(wiki_pages: pa.Table, taxa: pa.Table) -> pa.Table:
    """The taxa whose wiki row has text: ``taxon_id, binomial, text, common_name``."""
    common = dict(zip(taxa["taxon_id"].to_pylist(), taxa["common_name"].to_pylist(), strict=True))
    has_text = pc.fill_null(pc.greater(pc.utf8_length(wiki_pages["text"]), 0), False)
    with_text = wiki_pages.filter(has_text)
    return with_text.select(["taxon_id", "binomial", "text"]).append_column(
        "common_name",
        pa.array([common.get(t) for t in with_text["taxon_id"].to_pylist()], pa.string()),
    )


def released_descriptions(released: pa.Table, todo: pa.Table, source: str) -> pa.Table:
    """Results from a released Parquet with ``binomial`` and ``description`` columns."""
    missing = {"binomial", "description"} - set(released.column_names)
    if missing:
        raise ValueError(f"released descriptions {source}: missing column(s) {sorted(missing)}")
    by_binomial = dict(
        zip(released["binomial"].to_pylist(), released["description"].to_pylist(), strict=True)
    )
    rows = []
    for row in todo.to_pylist():
        text = by_binomial.get(row["binomial"]) or ""
        rows.append(
            {
                "taxon_id": row["taxon_id"],
                "description": text,
                "status": "ok" if text else "empty",
                "reason": "" if text else "no released description",
                "backend": "released",
                "model": RELEASED_MODEL,
            }
        )
    return pa.Table.from_pylist(rows)


def descriptions_table(
    wiki_pages: pa.Table, results: pa.Table, backend: str, model: str
) -> pa.Table:
    """One row per taxon of ``wiki_pages``: its result, or ``no_text`` when its page gave
    none (``backend``/``model`` name what would have filtered it)."""
    by_id = {r["taxon_id"]: r for r in results.to_pylist()}
    rows = []
    for row in wiki_pages.to_pylist():
        result = by_id.get(row["taxon_id"])
        rows.append(
            {
                "taxon_id": row["taxon_id"],
                "binomial": row["binomial"],
                **{r: row[r] for r in RANKS},
                "description": result["description"] if result else "",
                "status": result["status"] if result else "no_text",
                "reason": result["reason"] if result else f"wiki status {row['status']}",
                "backend": result["backend"] if result else backend,
                "model": result["model"] if result else model,
                "source_chars": len(row["text"] or ""),
            }
        )
    return pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)


def summary(table: pa.Table, preview: int = 10) -> dict:
    """Status counts, a preview of the kept descriptions and the first errors' reasons."""
    rows = table.to_pylist()
    counts = Counter(r["status"] for r in rows)
    return {
        "status_counts": {s: counts.get(s, 0) for s in STATUSES},
        "preview": [
            {"binomial": r["binomial"], "description": r["description"][:160]}
            for r in rows
            if r["status"] == "ok"
        ][:preview],
        "error_examples": [r["reason"] for r in rows if r["status"] == "error"][:5],
    }
