"""The human report of an evaluation: Markdown and a self-contained HTML page.

It leads with the BioCAP paper's two tables, our checkpoints as rows beside the published
ones: zero-shot top-1 in the paper's ten columns and their mean, and retrieval in its
eight columns and their mean. Then one bar chart per task with this checkpoint's value
against chance, every metric, and earlier checkpoints. Plots are inline SVG (no plotting
library, no external file).

How our datasets map to the paper's columns (``ZERO_SHOT_COLUMNS``,
``RETRIEVAL_COLUMNS``): by the annotation names of the upstream ``data/`` folder.
"Camera Trap" is the plain mean of the five camera-trap sets' top-1 (the reference runs
them as five separate evaluations and publishes one number; its aggregation is not in
the code, so the plain mean is our assumption). The retrieval columns are Recall@10
(``RETRIEVAL_RECALL_K``): the project page does not say which recall it reports, and
@10 is our assumption (see docs/evaluation.md); INQUIRE's are AP, averaged over the
queries of each supercategory. PLT_DOC_Mini is evaluated but, as in the paper, is not a
column and not in the mean.
"""

from __future__ import annotations

import html
import json
from pathlib import PurePosixPath as Path

import pandas as pd

from biocap_assets.common.files import atomic_open
from biocap_assets.plots import svg_bars

RETRIEVAL_RECALL_K = 10
# One number per dataset for the charts and summaries: what the paper's tables report.
HEADLINE = {
    "zero_shot": "top1",
    "retrieval": f"text_to_image_R@{RETRIEVAL_RECALL_K}",
    "inquire_rerank": "AP",
}
NOT_EVALUATED = "not evaluated"
PUBLISHED_SOURCE = (
    "BioCAP project page, imageomics.github.io/biocap (Zhang et al., BioCAP, "
    "arXiv:2510.20095, ICLR 2026)"
)

# (group, column, dataset-name keys: a dataset belongs to a column when its lower-cased
# name contains one of them)
ZERO_SHOT_COLUMNS = (
    ("Animals", "NABirds", ("nabird",)),
    ("Animals", "Plankton", ("plk_mini",)),
    ("Animals", "Insects", ("ins_mini",)),
    ("Animals", "Insects 2", ("ins_2_mini",)),
    (
        "Animals",
        "Camera Trap",
        ("desert-lion", "ena24", "island", "ohio-small-animals", "orinoquia"),
    ),
    ("Plants & Fungi", "PlantNet", ("plt_net_mini",)),
    ("Plants & Fungi", "Fungi", ("fng_mini",)),
    ("Plants & Fungi", "PlantVillage", ("plt_vil_mini",)),
    ("Plants & Fungi", "Med. Leaf", ("med_lf_mini",)),
    ("", "Rare Species", ("rare_species", "rare-species")),
)
# (group, column, dataset key, metric)
RETRIEVAL_COLUMNS = (
    ("INQUIRE-Rerank", "Appearance", "inquire", "AP/Appearance"),
    ("INQUIRE-Rerank", "Behavior", "inquire", "AP/Behavior"),
    ("INQUIRE-Rerank", "Context", "inquire", "AP/Context"),
    ("INQUIRE-Rerank", "Species", "inquire", "AP/Species"),
    ("Cornell Bird", "I2T", "cornell_bird", f"image_to_text_R@{RETRIEVAL_RECALL_K}"),
    ("Cornell Bird", "T2I", "cornell_bird", f"text_to_image_R@{RETRIEVAL_RECALL_K}"),
    ("PlantID", "I2T", "plantid", f"image_to_text_R@{RETRIEVAL_RECALL_K}"),
    ("PlantID", "T2I", "plantid", f"text_to_image_R@{RETRIEVAL_RECALL_K}"),
)
PUBLISHED_ZERO_SHOT = {
    "CLIP": (39.0, 3.3, 7.4, 9.3, 28.1, 52.5, 8.6, 5.1, 15.0, 25.7, 19.4),
    "SigLIP": (50.2, 3.7, 17.6, 9.6, 26.7, 76.3, 28.3, 26.1, 45.4, 30.7, 32.3),
    "BioCLIP": (58.8, 6.1, 34.9, 20.5, 31.7, 88.2, 40.9, 19.0, 38.5, 37.1, 37.6),
    "BioCAP": (67.6, 7.2, 41.9, 23.7, 37.4, 93.6, 64.4, 33.0, 51.4, 44.2, 46.4),
}
PUBLISHED_RETRIEVAL = {
    "CLIP": (30.8, 32.9, 37.2, 37.1, 33.8, 29.1, 25.0, 22.1, 31.0),
    "SigLIP": (34.6, 37.2, 41.4, 36.2, 47.7, 50.2, 42.1, 38.1, 40.9),
    "BioCLIP": (27.4, 27.2, 30.8, 41.1, 15.1, 16.2, 47.8, 45.0, 31.3),
    "BioCAP": (37.1, 33.6, 37.0, 43.0, 54.0, 52.0, 81.4, 83.0, 52.6),
}


def _matches(dataset: str, keys: tuple[str, ...]) -> bool:
    name = dataset.lower()
    return any(k in name for k in keys)


def zero_shot_row(rows: pd.DataFrame) -> list[float | None]:
    """This model's ten zero-shot top-1 columns and their mean (None: not evaluated)."""
    top1 = rows[(rows["task"] == "zero_shot") & (rows["metric"] == "top1")]
    if top1.empty:
        return [None] * (len(ZERO_SHOT_COLUMNS) + 1)
    values: list[float | None] = []
    for _, column, keys in ZERO_SHOT_COLUMNS:
        picked = top1[top1["dataset"].map(lambda d, keys=keys: _matches(d, keys))]
        if column == "Camera Trap" and picked["dataset"].nunique() < len(keys):
            values.append(None)  # the mean of the five, or nothing
        else:
            values.append(float(picked["value"].mean()) if len(picked) else None)
    mean = sum(values) / len(values) if all(v is not None for v in values) else None
    return [*values, mean]


def retrieval_row(rows: pd.DataFrame) -> list[float | None]:
    """This model's eight retrieval columns and their mean (None: not evaluated)."""
    if rows.empty:
        return [None] * (len(RETRIEVAL_COLUMNS) + 1)
    values: list[float | None] = []
    for _, _, key, metric in RETRIEVAL_COLUMNS:
        picked = rows[
            rows["task"].isin(("retrieval", "inquire_rerank"))
            & rows["dataset"].str.lower().str.contains(key, regex=False)
            & (rows["metric"] == metric)
        ]
        values.append(float(picked["value"].iloc[0]) if len(picked) else None)
    mean = sum(values) / len(values) if all(v is not None for v in values) else None
    return [*values, mean]


def checkpoint_label(checkpoint: str) -> str:
    """A checkpoint's name in the tables: its run folder and file (``<run>/epoch_8``), so
    the epochs of one run stay apart."""
    path = Path(str(checkpoint))
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem


def paper_tables(
    rows: pd.DataFrame, history: pd.DataFrame, label: str, real_benchmarks: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(zero-shot table, retrieval table): published rows, then ours, newest last.

    ``real_benchmarks=False`` (a synthetic suite, such as the demo's): our rows keep the
    table's shape but every cell says not evaluated, whatever the datasets are named."""
    if not real_benchmarks:
        rows, history = rows.iloc[0:0], history.iloc[0:0]
    z_columns = [c for _, c, _ in ZERO_SHOT_COLUMNS] + ["Mean"]
    r_columns = [f"{g} {c}" for g, c, _, _ in RETRIEVAL_COLUMNS] + ["Mean"]
    ours: list[tuple[str, pd.DataFrame]] = []
    if not history.empty:
        for checkpoint, group in history.groupby("checkpoint", sort=False):
            ours += _rows_by_head(checkpoint_label(checkpoint), group)
    ours += _rows_by_head(label, rows)
    if not ours:
        ours.append((label, rows))
    zero = [
        {"model": m, "source": "published", **dict(zip(z_columns, v, strict=True))}
        for m, v in PUBLISHED_ZERO_SHOT.items()
    ] + [
        {
            "model": m,
            "source": "this platform",
            **dict(zip(z_columns, zero_shot_row(g), strict=True)),
        }
        for m, g in ours
    ]
    retrieval = [
        {"model": m, "source": "published", **dict(zip(r_columns, v, strict=True))}
        for m, v in PUBLISHED_RETRIEVAL.items()
    ] + [
        {
            "model": m,
            "source": "this platform",
            **dict(zip(r_columns, retrieval_row(g), strict=True)),
        }
        for m, g in ours
    ]
    return pd.DataFrame(zero), pd.DataFrame(retrieval)


def _rows_by_head(name: str, rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One table row per retrieval head: zero-shot (always the taxonomic head) with the
    retrieval and INQUIRE rows of that head."""
    zero_shot = rows[rows["task"] == "zero_shot"]
    others = rows[rows["task"] != "zero_shot"]
    heads = list(dict.fromkeys(others["head"])) or list(dict.fromkeys(rows["head"]))
    return [
        (f"{name} ({head} head)", pd.concat([zero_shot, others[others["head"] == head]]))
        for head in heads
    ]


def _format(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(
        lambda v: (
            NOT_EVALUATED
            if v is None or (isinstance(v, float) and pd.isna(v))
            else (f"{v:.1f}" if isinstance(v, float) else v)
        )
    )


def _html_table(table: pd.DataFrame, groups: list[str], leaves: list[str]) -> str:
    """A table with the paper's two header rows (groups above columns), then the mean."""
    formatted = _format(table)
    spans: list[tuple[str, int]] = []
    for group in groups + [""]:
        if spans and spans[-1][0] == group:
            spans[-1] = (group, spans[-1][1] + 1)
        else:
            spans.append((group, 1))
    head_top = "<th rowspan='2'>model</th><th rowspan='2'>source</th>" + "".join(
        f"<th colspan='{n}'>{html.escape(g)}</th>" for g, n in spans
    )
    head_bottom = "".join(f"<th>{html.escape(c)}</th>" for c in [*leaves, "Mean"])
    body = "".join(
        "<tr"
        + (" class='ours'" if row["source"] != "published" else "")
        + ">"
        + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values)
        + "</tr>"
        for _, row in formatted.iterrows()
    )
    return f"<table><tr>{head_top}</tr><tr>{head_bottom}</tr>{body}</table>"


# What ``n`` counts, per task: metric rows count what the value is a mean over; coverage
# rows (``missing_images``) count the images looked for.
UNITS = {"zero_shot": "images", "retrieval": "pairs", "inquire_rerank": "queries"}
COVERAGE_UNITS = {"zero_shot": "images", "retrieval": "images", "inquire_rerank": "candidates"}
COVERAGE_METRIC = "missing_images"
CI_COLUMN = "95% CI"


def _interval(row) -> str:
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "—"
    return f"[{low:.2f}, {high:.2f}]"


def metric_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Every metric (coverage rows left out): value, its 95% bootstrap interval, chance,
    and n with what it counts."""
    picked = rows[rows["metric"] != COVERAGE_METRIC]
    table = picked[["task", "dataset", "metric", "head", "value", "chance", "n"]].copy()
    table.insert(5, CI_COLUMN, [_interval(r) for _, r in picked.iterrows()])
    table["unit"] = picked["task"].map(UNITS).fillna("")
    return table.reset_index(drop=True)


def coverage_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per evaluated dataset: how many of its images were missing, of how many."""
    picked = rows[rows["metric"] == COVERAGE_METRIC]
    return pd.DataFrame(
        {
            "task": picked["task"],
            "dataset": picked["dataset"],
            "missing": picked["value"].astype(int),
            "of": picked["n"].astype(int),
            "unit": picked["task"].map(COVERAGE_UNITS).fillna(""),
        }
    ).reset_index(drop=True)


def headline(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset: its headline metric, its 95% interval, chance, and n."""
    picked = rows[rows.apply(lambda r: HEADLINE.get(r["task"]) == r["metric"], axis=1)]
    table = picked[["task", "dataset", "metric", "value", "chance", "n"]].copy()
    table.insert(4, CI_COLUMN, [_interval(r) for _, r in picked.iterrows()])
    table["unit"] = picked["task"].map(UNITS).fillna("")
    return table.reset_index(drop=True)


def provenance_rows(provenance: dict[str, object]) -> list[tuple[str, str]]:
    """The report's header: what was evaluated, on what, by which code, when."""
    return [(k, str(v)) for k, v in provenance.items() if v not in (None, "")]


def _with_heads(rows: pd.DataFrame, history: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows written before heads were recorded scored with the taxonomic head."""
    if "head" not in rows:
        rows = rows.assign(head="taxonomic")
    if not history.empty and "head" not in history:
        history = history.assign(head="taxonomic")
    return rows, history


def report_data(
    checkpoint: str,
    rows: pd.DataFrame,
    history: pd.DataFrame,
    not_evaluated: dict[str, str] | None = None,
    label: str = "this checkpoint",
    real_benchmarks: bool = True,
    provenance: dict[str, object] | None = None,
) -> dict:
    """The report's content for scripts (written as JSON beside the HTML)."""
    rows, history = _with_heads(rows, history)
    zero, retrieval = paper_tables(rows, history, label, real_benchmarks)

    def records(frame: pd.DataFrame) -> list[dict]:
        return json.loads(frame.to_json(orient="records"))

    return {
        "checkpoint": checkpoint,
        "provenance": dict(provenance or {}),
        "real_benchmarks": real_benchmarks,
        "paper_zero_shot": records(zero),
        "paper_retrieval": records(retrieval),
        "headline": records(headline(rows)),
        "metrics": records(
            rows[rows["metric"] != COVERAGE_METRIC].drop(
                columns=[c for c in ("checkpoint", "evaluated_at") if c in rows]
            )
        ),
        "coverage": records(coverage_table(rows)),
        "not_evaluated": dict(not_evaluated or {}),
        "units": UNITS,
        "interval": "95% percentile bootstrap over the items behind each value, 1000 draws",
    }


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


def render(
    checkpoint: str,
    rows: pd.DataFrame,
    history: pd.DataFrame,
    not_evaluated: dict[str, str] | None = None,
    label: str = "this checkpoint",
    real_benchmarks: bool = True,
    provenance: dict[str, object] | None = None,
) -> tuple[str, str]:
    """(markdown, html) for ``rows`` of this checkpoint; ``history``: earlier checkpoints'
    rows (checkpoint, task, dataset, metric, value, head); ``not_evaluated``: dataset ->
    why it was left out; ``provenance``: the header (what, on what, which code, when)."""
    rows, history = _with_heads(rows, history)
    not_evaluated = not_evaluated or {}
    zero, retrieval = paper_tables(rows, history, label, real_benchmarks)
    synthetic_note = (
        ""
        if real_benchmarks
        else "This suite is synthetic (the demo world): none of its datasets is one of the "
        "paper's benchmarks, so our rows show the tables' shape only; its own numbers are "
        "below."
    )
    table = headline(rows)
    headline_history = (
        history[history.apply(lambda r: HEADLINE.get(r["task"]) == r["metric"], axis=1)]
        if not history.empty
        else history
    )
    retrieval_note = (
        f"INQUIRE-Rerank columns: AP over each supercategory's queries; Cornell Bird and "
        f"PlantID: Recall@{RETRIEVAL_RECALL_K} (assumed: the paper does not say which recall)."
    )
    camera_note = (
        "Camera Trap: the plain mean of the five camera-trap sets (assumed). Published rows "
        "as the project page gives them; its SigLIP mean (32.3) is not the mean of its ten "
        "columns (31.5)."
    )
    about = provenance_rows(provenance or {})
    banner = (
        "**Real benchmarks.**"
        if real_benchmarks
        else "**Synthetic demo data**: these numbers say the pipeline works, nothing about biology."
    )
    interval_note = (
        f"{CI_COLUMN}: a 95% percentile bootstrap interval over the items behind each value "
        "(images, pairs or queries; 1000 draws). `n` counts those items (`unit`)."
    )
    md = [
        f"# Evaluation of `{checkpoint}`",
        "",
        banner,
        "",
        *(["| | |", "|:--|:--|", *(f"| {k} | {v} |" for k, v in about)] if about else []),
        "",
        "Percent. Published rows from the " + PUBLISHED_SOURCE + "; they are on the real "
        "benchmarks, so compare them only with a run on those benchmarks, never with the "
        f"demo world. `{NOT_EVALUATED}`: that benchmark was not in this suite.",
        "",
        synthetic_note,
        "",
        "## Zero-shot classification, top-1 (the paper's table)",
        "",
        _format(zero).to_markdown(index=False),
        "",
        camera_note,
        "",
        "## Text-image retrieval (the paper's table)",
        "",
        _format(retrieval).to_markdown(index=False),
        "",
        retrieval_note,
        "",
        "## Headline per dataset",
        "",
        "Chance: the expected value of a random scorer (zero-shot k/classes, retrieval "
        "k/pairs, INQUIRE the mean over random rankings of the same candidates). " + interval_note,
        "",
        table.to_markdown(index=False, floatfmt=".2f"),
        "",
        "## All metrics",
        "",
        metric_table(rows).to_markdown(index=False, floatfmt=".2f"),
        "",
        "## Coverage",
        "",
        "Images the evaluation looked for and did not find (left out of the metrics).",
        "",
        coverage_table(rows).to_markdown(index=False),
    ]
    if not_evaluated:
        md += ["", "## Not evaluated", ""]
        md += [f"- `{name}`: {why}" for name, why in not_evaluated.items()]
    if not headline_history.empty:
        md += [
            "",
            "## Against earlier checkpoints",
            "",
            headline_history.to_markdown(index=False, floatfmt=".2f"),
        ]
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
        "<style>body{font-family:sans-serif;font-size:14px;max-width:1180px;margin:1.5em auto}"
        "table{border-collapse:collapse;margin:0.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 5px;text-align:center}"
        "tr.ours td{background:#eef6ee;font-weight:bold}"
        "table.metrics td{text-align:right;font-variant-numeric:tabular-nums}"
        "table.about th,table.about td{text-align:left}"
        ".banner{padding:4px 8px;font-weight:bold}.banner.demo{background:#fff3cd}"
        ".note{color:#555;font-size:90%}</style></head><body>"
        f"<h1>Evaluation of <code>{html.escape(checkpoint)}</code></h1>"
        f"<p class='banner {'real' if real_benchmarks else 'demo'}'>"
        + html.escape(banner.replace("**", ""))
        + "</p>"
        + (
            "<table class='about'>"
            + "".join(
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in about
            )
            + "</table>"
            if about
            else ""
        )
        + f"<p class='note'>Percent. Published rows: {html.escape(PUBLISHED_SOURCE)}; they are "
        "on the real benchmarks, so compare them only with a run on those benchmarks. "
        f"<i>{NOT_EVALUATED}</i>: that benchmark was not in this suite. "
        f"{html.escape(synthetic_note)}</p>"
        "<h2>Zero-shot classification, top-1</h2>"
        + _html_table(
            zero, [g for g, _, _ in ZERO_SHOT_COLUMNS], [c for _, c, _ in ZERO_SHOT_COLUMNS]
        )
        + f"<p class='note'>{html.escape(camera_note)}</p>"
        + "<h2>Text-image retrieval</h2>"
        + _html_table(
            retrieval,
            [g for g, _, _, _ in RETRIEVAL_COLUMNS],
            [c for _, c, _, _ in RETRIEVAL_COLUMNS],
        )
        + f"<p class='note'>{html.escape(retrieval_note)}</p>"
        + "<h2>Headline per dataset</h2><p>Bars: this checkpoint (percent); red tick: "
        "chance.</p>"
        + "".join(sections)
        + "<h3>The same, as a table</h3>"
        + table.to_html(index=False, float_format=lambda v: f"{v:.2f}", classes="metrics")
        + f"<p class='note'>{html.escape(interval_note)}</p>"
        + "<h2>All metrics</h2>"
        + metric_table(rows).to_html(
            index=False, float_format=lambda v: f"{v:.2f}", classes="metrics"
        )
        + "<h2>Coverage</h2><p class='note'>Images the evaluation looked for and did not "
        "find (left out of the metrics).</p>"
        + coverage_table(rows).to_html(index=False, classes="metrics")
        + (
            "<h2>Not evaluated</h2><ul>"
            + "".join(
                f"<li><code>{html.escape(n)}</code>: {html.escape(w)}</li>"
                for n, w in not_evaluated.items()
            )
            + "</ul>"
            if not_evaluated
            else ""
        )
        + (
            "<h2>Against earlier checkpoints</h2>"
            + _history_svg(table, headline_history)
            + headline_history.to_html(index=False, float_format=lambda v: f"{v:.2f}")
            if not headline_history.empty
            else ""
        )
        + "</body></html>"
    )
    return "\n".join(md) + "\n", page


def provenance(
    summary: dict, benchmarks: str, options: dict[str, str], code_version: str, run_id: str, when
) -> dict[str, object]:
    """The report's header: what was evaluated (the checkpoint's summary), on what, with
    which options and code, when and in which run."""
    return {
        "benchmarks": benchmarks,
        "checkpoint": summary["checkpoint"],
        "model": summary.get("model", ""),
        "preset": summary.get("preset", ""),
        "epochs": summary.get("epochs", ""),
        "training data version": summary.get("data_version", ""),
        "image head": options["head"],
        "retrieval template": repr(options["retrieval_template"]),
        "precision": options["precision"],
        "code version": code_version,
        "evaluated": when.strftime("%Y-%m-%d %H:%M UTC"),
        "run": run_id,
    }


def write_reports(folder: str, stem: str, report: dict) -> dict[str, str]:
    """``<stem>.md``, ``.html`` and ``.json`` of ``report`` (``render``'s arguments) in
    ``folder`` (a path or URL), each written atomically: a failed or interrupted write
    leaves the previous report, never half of one. Returns suffix -> where it is."""
    markdown, page = render(**report)
    data = json.dumps(report_data(**report), indent=1, default=str)
    written = {}
    for suffix, text in ((".md", markdown), (".html", page), (".json", data)):
        target = f"{folder.rstrip('/')}/{stem}{suffix}"
        with atomic_open(target, "wb") as out:
            out.write(text.encode("utf-8"))
        written[suffix] = target
    return written
