"""One module per pipeline stage; each stays thin and calls plain functions."""
