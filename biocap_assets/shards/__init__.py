"""Webdataset shard naming, deterministic tar writing and sample validation."""
