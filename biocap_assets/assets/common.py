"""What the assets share: their owners, and the one inference-parameters config.

(No `from __future__ import annotations` here: Dagster reads these annotations.)
"""

import dataclasses
import typing

import dagster as dg
import pydantic

from biocap_assets.inference.factory import FIELD_DOCS, InferenceConfig

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
