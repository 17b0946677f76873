"""The human report of an evaluation: Markdown and a self-contained HTML page.

Plots are inline SVG (no plotting library, no external file): one bar chart per
task with this checkpoint's value against chance, and a table of this checkpoint
against the earlier ones evaluated on the same datasets.
"""

from __future__ import annotations

import html
from pathlib import PurePosixPath as Path

import pandas as pd

from biocap_assets.plots import svg_bars

HEADLINE = {"zero_shot": "top1", "retrieval": "text_to_image_R@1", "inquire_rerank": "AP"}

# What the BioCAP and BioCLIP authors report, quoted with the source. These are averages
# over the real benchmarks (ViT-B/16 models trained on TreeOfLife-10M): they compare with a
# run on those benchmarks only, never with the demo world. Per-dataset reference tables are
# not reproduced because we could not verify them against the papers here.
PUBLISHED = (
    (
        "BioCAP vs BioCLIP, zero-shot species classification (10 benchmarks, average)",
        "+8.8% (as the abstract words it)",
        "Zhang et al., BioCAP, arXiv:2510.20095 (ICLR 2026), abstract",
    ),
    (
        "BioCAP vs BioCLIP, biological text-image retrieval (average)",
        "+21.3%",
        "Zhang et al., BioCAP, arXiv:2510.20095 (ICLR 2026), abstract",
    ),
    (
        "BioCLIP vs the baselines it was compared with, fine-grained classification",
        "+16% to +17% absolute",
        "Stevens et al., BioCLIP, arXiv:2311.18803 (CVPR 2024), abstract",
    ),
)


def headline(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset: its headline metric, chance, and n."""
    picked = rows[rows.apply(lambda r: HEADLINE.get(r["task"]) == r["metric"], axis=1)]
    return picked[["task", "dataset", "metric", "value", "chance", "n"]].reset_index(drop=True)


def _history_svg(table: pd.DataFrame, history: pd.DataFrame) -> str:
    """Per dataset: bars of the earlier checkpoints' headline values, then this one's."""
    parts = []
    for row in table.itertuples():
        earlier = history[(history["dataset"] == row.dataset) & (history["metric"] == row.metric)]
        items = [
            (Path(str(c)).parent.name + "/" + Path(str(c)).name, float(v), float(row.chance))
            for c, v in zip(earlier["checkpoint"], earlier["value"], strict=True)
        ]
        items.append(("this checkpoint", float(row.value), float(row.chance)))
        parts.append(
            f"<h4>{html.escape(row.dataset)} ({html.escape(row.metric)})</h4>" + svg_bars(items)
        )
    return "".join(parts)


def render(checkpoint: str, rows: pd.DataFrame, history: pd.DataFrame) -> tuple[str, str]:
    """(markdown, html) for ``rows`` of this checkpoint; ``history``: earlier headlines."""
    table = headline(rows)
    md = [
        f"# Evaluation of `{checkpoint}`",
        "",
        "Values and chance levels in percent. Chance: the expected value of a random "
        "scorer (zero-shot k/classes, retrieval k/candidates, INQUIRE the mean over random "
        "rankings of the same candidates).",
        "",
        "## Headline",
        "",
        table.to_markdown(index=False, floatfmt=".2f"),
        "",
        "## All metrics",
        "",
        rows[["task", "dataset", "metric", "value", "chance", "n"]].to_markdown(
            index=False, floatfmt=".2f"
        ),
    ]
    if not history.empty:
        md += [
            "",
            "## Against earlier checkpoints",
            "",
            history.to_markdown(index=False, floatfmt=".2f"),
        ]
    md += [
        "",
        "## Published reference (real benchmarks only)",
        "",
        "| claim | reported | source |",
        "| --- | --- | --- |",
    ]
    md += [f"| {claim} | {value} | {source} |" for claim, value, source in PUBLISHED]
    sections = []
    for task, group in table.groupby("task", sort=False):
        items = [
            (d, float(v), float(c))
            for d, v, c in zip(group["dataset"], group["value"], group["chance"], strict=True)
        ]
        sections.append(
            f"<h3>{html.escape(task)} ({html.escape(HEADLINE[task])})</h3>{svg_bars(items)}"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Evaluation of {html.escape(checkpoint)}</title>"
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "</style></head><body>"
        f"<h1>Evaluation of <code>{html.escape(checkpoint)}</code></h1>"
        "<p>Bars: this checkpoint (percent); red tick: chance.</p>"
        + "".join(sections)
        + "<h2>All metrics</h2>"
        + rows[["task", "dataset", "metric", "value", "chance", "n"]].to_html(
            index=False, float_format=lambda v: f"{v:.2f}"
        )
        + (
            "<h2>Against earlier checkpoints</h2>"
            + _history_svg(table, history)
            + history.to_html(index=False, float_format=lambda v: f"{v:.2f}")
            if not history.empty
            else ""
        )
        + "<h2>Published reference (real benchmarks only)</h2><ul>"
        + "".join(
            f"<li>{html.escape(c)}: <b>{html.escape(v)}</b> ({html.escape(src)})</li>"
            for c, v, src in PUBLISHED
        )
        + "</ul></body></html>"
    )
    return "\n".join(md) + "\n", page
