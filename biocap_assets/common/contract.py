"""What a step and its worker agree on, outside the Pipes extras."""

# The file (an environment variable names it) where a failing worker writes why, so the
# step fails with the worker's own error, locally and as a pod's termination message.
ERROR_FILE_ENV = "BIOCAP_WORKER_ERROR_FILE"

# A worker error that a retry would meet again (a damaged input file): the worker writes
# this mark before it, and the step fails at once instead of retrying (the partition stays
# failed, with its reason, and the backfill's other partitions go on).
NO_RETRY_MARK = "[bad input, not retried] "


class BadInput(Exception):
    """Mixed into the errors that name input data as it is (a truncated shard, a member
    that is not UTF-8): no retry can succeed until the input is replaced."""
