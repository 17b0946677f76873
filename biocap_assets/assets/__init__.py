"""One module per pipeline stage; each stays thin and calls plain functions.

``code_version`` on an asset is bumped when the same inputs would now give a different
output (a new prompt, a new checkpoint layout...), so Dagster shows the older
materializations as stale; a refactor that changes nothing downstream keeps it.
"""

import warnings

# Dagster features we use knowingly that Dagster marks beta or preview. Their warnings tell a
# user nothing to act on, so they are silenced here, once, by their message.
KNOWN_DAGSTER_WARNINGS = (
    r"Parameter `backfill_policy` of function `asset`",
    r"Function `with_source_code_references`",
    r"Class `LocalFileCodeReference`",
    r"Class `CodeReferencesMetadataValue`",
    r"Function `PipesMessageReader\.expected_writer_count`",
    r"Specifying a partitions_def on an AssetCheckSpec",
)
for _message in KNOWN_DAGSTER_WARNINGS:
    warnings.filterwarnings("ignore", message=_message)
