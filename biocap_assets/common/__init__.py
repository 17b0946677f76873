"""Helpers every layer may use: files and URLs, Parquet, the worker contract.

Nothing here imports Dagster or another ``biocap_assets`` module, so workers, stage
libraries, resources and assets can all depend on it (see docs/architecture.md).
"""
