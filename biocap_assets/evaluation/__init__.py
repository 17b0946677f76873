"""Evaluation: zero-shot classification, text-image retrieval, INQUIRE reranking, reports."""
