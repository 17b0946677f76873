"""What the assets share: their owners, and the one inference-parameters config.

(No `from __future__ import annotations` here: Dagster reads these annotations.)
"""

import dataclasses
import typing

import dagster as dg
import pydantic

from biocap_assets.inference.factory import FIELD_DOCS, InferenceConfig
from biocap_assets.resources.duckdb import table_exists

OWNERS = ["team:biocap-data"]


def inference_params(name: str, doc: str, **defaults) -> type[dg.Config]:
    """A Dagster config class with ``InferenceConfig``'s fields (but ``backend``, which the
    asset's own config chooses) and these ``defaults``: one definition of the inference
    parameters, nested in each asset config that runs a model."""
    hints = typing.get_type_hints(InferenceConfig)
    fields = {}
    for field in dataclasses.fields(InferenceConfig):
        if field.name == "backend":
            continue
        kind, default = hints[field.name], defaults.get(field.name, field.default)
        if kind == tuple[str, ...]:  # Dagster config takes lists
            kind, default = list[str], list(default)
        fields[field.name] = (
            kind,
            pydantic.Field(default, description=FIELD_DOCS.get(field.name)),
        )
    return pydantic.create_model(name, __base__=dg.Config, __doc__=doc, **fields)


def to_inference_config(backend: str, params: dg.Config) -> InferenceConfig:
    """The stage library's InferenceConfig from an asset's nested parameters."""
    return InferenceConfig.from_dict({**params.model_dump(), "backend": backend})


class ShrinkGuard(dg.Config):
    """A rebuilt table must not silently lose its rows (a header-only catalog, an empty
    answer): zero rows, or losing more than ``max_shrink_share`` of what the table holds,
    fails the step and keeps the table, unless ``allow_shrink`` says it is intended."""

    allow_shrink: bool = False
    """Accept a result with no rows, or one that loses more than max_shrink_share."""
    max_shrink_share: float = 0.5
    """The largest share of the table's current rows a rebuild may lose."""


def check_shrink(guard: ShrinkGuard, duckdb, table: str, new_rows: int, source: str) -> None:
    """Raise ``dg.Failure`` naming the table and the source when ``new_rows`` would empty or
    shrink ``table`` past the guard (DuckDB or DuckLake, through the resource)."""
    if guard.allow_shrink:
        return
    with duckdb.get_connection() as connection:
        current = (
            connection.execute(f'SELECT count(*) FROM main."{table}"').fetchall()[0][0]
            if table_exists(connection, table)
            else 0
        )
    fix = "set allow_shrink: true in the run config if that is intended"
    if new_rows == 0:
        raise dg.Failure(
            f"table {table}: {source} gives no rows (the table keeps its {current}); {fix}",
            allow_retries=False,
        )
    if current and (current - new_rows) / current > guard.max_shrink_share:
        raise dg.Failure(
            f"table {table}: {source} gives {new_rows} rows where the table has {current}, "
            f"a loss above max_shrink_share={guard.max_shrink_share}; {fix}",
            allow_retries=False,
        )
