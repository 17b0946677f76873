"""One module per pipeline stage; each stays thin and calls plain functions.

``code_version`` on an asset is bumped when the same inputs would now give a different
output (a new prompt, a new checkpoint layout...), so Dagster shows the older
materializations as stale; a refactor that changes nothing downstream keeps it.
"""
