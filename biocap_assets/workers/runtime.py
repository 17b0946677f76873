"""The one place workers touch Dagster Pipes, so each also runs by hand."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

from dagster_pipes import (
    PipesContext,
    PipesDefaultContextLoader,
    PipesEnvVarParamsLoader,
    open_dagster_pipes,
)

from biocap_assets.common.contract import ERROR_FILE_ENV, NO_RETRY_MARK, BadInput
from biocap_assets.common.secrets import RedactingStream, redact


class _Redact(logging.Filter):
    """Log records leave the worker (to Dagster's event log) with secrets removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        return True


class WorkerContext:
    """Parameters in, logs and results out: through Pipes when launched by Dagster."""

    def __init__(self, extras: Mapping[str, Any], pipes: PipesContext | None):
        self.extras = dict(extras)
        self._pipes = pipes
        if pipes is not None:
            self.log: logging.Logger = pipes.log
        else:
            logging.basicConfig(
                level=logging.INFO,
                stream=sys.stderr,
                format="%(asctime)s %(levelname)s %(message)s",
            )
            self.log = logging.getLogger("biocap.worker")
        if not any(isinstance(f, _Redact) for f in self.log.filters):
            self.log.addFilter(_Redact())

    def require(self, parser: argparse.ArgumentParser, *names: str) -> None:
        """Exit with a usage error naming each parameter neither flag nor extra gave."""
        for name in names:
            if not self.extras.get(name):
                parser.error(f"--{name.replace('_', '-')} (or the '{name}' extra) is required")

    @property
    def under_dagster(self) -> bool:
        return self._pipes is not None

    def report_result(self, payload: Mapping[str, Any]) -> None:
        """Send the worker's result to the step (a Pipes custom message) or to stdout."""
        if self._pipes is not None:
            self._pipes.report_custom_message(dict(payload))
        else:
            print(json.dumps(payload, indent=1, sort_keys=True, default=str))


# The launcher names a file here; a failing worker writes its error into it so
# the step fails with the worker's own message, not only an exit code.


def _record_error(exc: BaseException) -> None:
    path = os.environ.get(ERROR_FILE_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            mark = NO_RETRY_MARK if isinstance(exc, BadInput) else ""
            f.write(redact(f"{mark}{type(exc).__name__}: {exc}"))


@contextmanager
def worker_context(
    cli_extras: Mapping[str, Any], use_pipes: bool = True
) -> Iterator[WorkerContext]:
    """Pipes extras override the command-line values when Dagster launched us.

    ``use_pipes=False`` (ranks other than 0 of a torchrun job) keeps a process off the
    Pipes channel; it still reads the extras Dagster passed.
    """
    try:
        loader = PipesEnvVarParamsLoader()
        if loader.is_dagster_pipes_process() and not use_pipes:
            with PipesDefaultContextLoader().load_context(loader.load_context_params()) as data:
                extras = dict(data.get("extras") or {})
            yield WorkerContext({**cli_extras, **extras}, None)
        elif loader.is_dagster_pipes_process():
            with open_dagster_pipes() as pipes:
                yield WorkerContext({**cli_extras, **pipes.extras}, pipes)
        else:
            yield WorkerContext(cli_extras, None)
    except Exception as exc:
        _record_error(exc)
        raise


def run_main(main: Callable[[], object]) -> NoReturn:
    """Run a worker's ``main`` and leave without interpreter teardown.

    Once the work is done and reported, a native library's static destructors have been
    seen to abort a worker at exit ("terminate called without an active exception",
    exit code -6), failing a step whose work had succeeded. Leaving with ``os._exit``
    after flushing makes the exit status the work's own.
    """
    code = 0
    # what the worker and its libraries print (Scrapy's log, a traceback) reaches the
    # step's compute logs: without secrets
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - report any failure, then exit non-zero
        traceback.print_exc()
        code = 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
