"""Prompt building and text generation backends (vllm | openai | cpu fallbacks)."""
