"""Worker entry points, each ``python -m biocap_assets.workers.<name>``.

Under Dagster they speak Pipes (parameters arrive as extras, results go back as
messages); started by hand they take the same parameters as command-line flags
and print their result as JSON.
"""
