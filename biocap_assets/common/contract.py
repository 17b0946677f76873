"""What a step and its worker agree on, outside the Pipes extras."""

# The file (an environment variable names it) where a failing worker writes why, so the
# step fails with the worker's own error, locally and as a pod's termination message.
ERROR_FILE_ENV = "BIOCAP_WORKER_ERROR_FILE"
