"""The ``biocap`` command line.

``biocap demo`` builds the demo world and materializes the whole graph on it in
this process (workers still run as subprocesses), recording the runs in a
persistent Dagster instance so ``make dev`` shows them afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from biocap_assets.common.secrets import redact
from biocap_assets.settings import ConfigurationError, Settings, readme_table

# the instance settings biocap ships (run queue, concurrency), copied into a new DAGSTER_HOME
INSTANCE_YAML = Path(__file__).resolve().parent / "dagster.yaml"


def _dagster_home(settings: Settings) -> Path:
    """``$DAGSTER_HOME``, or ``$BIOCAP_HOME/dagster`` set up with biocap's dagster.yaml."""
    if settings.dagster_home:
        return settings.dagster_home
    home = settings.home / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and INSTANCE_YAML.exists():
        shutil.copyfile(INSTANCE_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


class StepLines:
    """One line per step of the demo's runs, as each step ends: outcome, job, partition,
    step, seconds, checks; a failure's message under it."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.started: dict[tuple[str, str], float] = {}
        self.checks: dict[tuple[str, str], list[bool]] = {}
        self.partitions: dict[str, str] = {}

    def __call__(self, entry) -> None:
        event = entry.dagster_event
        if event is None:
            return
        key = (entry.run_id, event.step_key or "")
        kind = event.event_type_value
        if kind == "STEP_START":
            self.started[key] = entry.timestamp
        elif event.partition:  # planned or done: a run that fails still names its partition
            self.partitions[entry.run_id] = event.partition
        elif kind == "ASSET_CHECK_EVALUATION":
            self.checks.setdefault(key, []).append(event.event_specific_data.passed)
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            seconds = entry.timestamp - self.started.pop(key, entry.timestamp)
            checks = self.checks.pop(key, [])
            job = entry.job_name + (
                f"[{self.partitions[entry.run_id]}]" if entry.run_id in self.partitions else ""
            )
            line = f"{'ok' if kind == 'STEP_SUCCESS' else 'FAILED':6} {job:26} {key[1]:40}"
            line += f" {seconds:6.1f} s"
            if checks:
                line += f"  checks {sum(checks)}/{len(checks)} passed"
            print(line, file=self.out, flush=True)
            error = event.event_specific_data.error if kind == "STEP_FAILURE" else None
            if error is not None:
                message = redact(error.message.strip())
                print("       " + message.replace("\n", "\n       "), file=self.out, flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.home:
        os.environ["BIOCAP_HOME"] = str(Path(args.home).resolve())
    settings = Settings.from_env()
    dagster_home = _dagster_home(settings)

    import dagster as dg

    from biocap_assets.jobs import run_everything

    instance = dg.DagsterInstance.get()
    if args.verbose:
        results = run_everything(instance)
    else:
        results = run_everything(instance, console_level="WARNING", on_event=StepLines())
    _print_headline(results)
    print()
    for label, where in _outputs(settings):
        print(f"{label + ':':16}{where}")
    print(f"{'Dagster runs:':16}{dagster_home} (see them with `make dev`)")
    if not results or not results[-1].success:
        print("\nThe demo run failed; the error is above.", file=sys.stderr)
        return 1
    return 0


def _outputs(settings: Settings) -> list[tuple[str, str]]:
    """Where this configuration put things, as the summary names them."""
    tables = (
        f"DuckLake {redact(settings.ducklake_catalog)} (data {settings.ducklake_data_path})"
        if settings.ducklake_catalog
        else f"DuckDB {settings.duckdb_path}"
    )
    rows = [("Tables", tables), ("Storage root", redact(settings.storage_url))]
    demo_used = not (settings.catalog_url and settings.shards_url and settings.eval_data)
    if demo_used:
        rows.append(("Demo world", f"{settings.demo_root} (for the sources not set)"))
    return rows


def _print_headline(results) -> None:
    """The evaluation's headline table, each number beside its chance level."""
    for result in results:
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            if mat.asset_key.to_user_string() == "eval_reports":
                print("\nEvaluation (percent; chance = a random scorer's expected value):")
                print(mat.metadata["headline"].value)
                print(f"Report: {mat.metadata['report_html'].value}")


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served (None: it can)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as the webserver binds: a port left in TIME_WAIT by a stopped server is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return f"{host}:{port} is not free ({exc.strerror or exc})"
    return None


def cmd_dev(args: argparse.Namespace) -> int:
    """`dagster dev` on the instance `biocap demo` used, serving the ``biocap`` location."""
    from biocap_assets.jobs import DEFINITIONS_MODULE, LOCATION

    settings = Settings.from_env()
    problem = port_problem(args.host, args.port)
    if problem:
        print(
            f"biocap dev: {problem}; is another `make dev` running? Pick another port: "
            f"`make dev PORT={args.port + 1}` (or `biocap dev --port {args.port + 1}`).",
            file=sys.stderr,
        )
        return 2
    home = _dagster_home(settings)
    # the package's location, wherever it is installed (a file of ours: a workspace.yaml
    # the user keeps in their DAGSTER_HOME stays as it is)
    workspace = home / "biocap-workspace.yaml"
    workspace.write_text(
        "# written by `biocap dev`\nload_from:\n  - python_module:\n"
        f"      module_name: {DEFINITIONS_MODULE}\n      location_name: {LOCATION}\n"
    )
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
    print(f"biocap dev: the UI on http://{args.host}:{args.port}, instance {home}", flush=True)
    os.execv(dagster, command)  # the same process: Ctrl-C and signals reach dagster dev


def cmd_check(_: argparse.Namespace) -> int:
    """Preflight: each check ok or its problems, each naming the variable and the fix."""
    from biocap_assets.resources.preflight import run_all

    checks = run_all()
    problems = [p for c in checks for p in c.problems]
    for check in checks:
        if check.problems:
            for problem in check.problems:
                print(f"PROBLEM {problem.variable}: {problem.what}\n        -> {problem.fix}")
        else:
            print(f"ok      {check.name:20} {check.detail}")
    print(
        f"\n{len(problems)} problem(s): fix them before a long job."
        if problems
        else "\nready: every check passed."
    )
    return 1 if problems else 0


def cmd_world(args: argparse.Namespace) -> int:
    from biocap_assets.demo.world import generate_demo_world

    world = generate_demo_world(args.out, seed=args.seed, force=args.force)
    print(f"demo world at {world.root}: {world.manifest['counts']}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Every variable: its value in effect (set, or the default), what it is for; secrets
    redacted; then the settings that do not go together. ``--markdown``: the README's
    configuration table, made from the same definitions."""
    import textwrap

    if args.markdown:
        print(readme_table())
        return 0
    settings = Settings.from_env()
    rows = settings.describe()
    print(f"{sum(is_set for _, _, is_set, _ in rows)} of {len(rows)} variables set.\n")
    for name, value, is_set, doc in rows:
        print(f"{name}  {'=' if is_set else '(default)'} {value or '(none)'}")
        text = doc.replace("`", "")  # the docs are the README's Markdown
        print(textwrap.fill(text, width=92, initial_indent="    ", subsequent_indent="    "))
    print("\nRead by the libraries that define them:")
    for name, value in Settings.third_party():
        print(f"{name}  {value}")
    problems = settings.inconsistencies()
    for problem in problems:
        print(f"\nwarning: {problem}")
    if not problems:
        print("\nNo inconsistent settings. `biocap check` tests that storage and data are there.")
    return 0


def main(argv: list[str] | None = None) -> int:
    from biocap_assets.demo.world import DEMO_SEED

    parser = argparse.ArgumentParser(prog="biocap", description="BioCAP data platform")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build the demo world and materialize the graph on it")
    demo.add_argument("--home", help="BIOCAP_HOME to use (default: $BIOCAP_HOME or ./.biocap)")
    demo.add_argument(
        "-v", "--verbose", action="store_true", help="print every event and worker log line"
    )
    demo.set_defaults(func=cmd_demo)
    world = sub.add_parser("world", help="write the demo world only")
    world.add_argument("out")
    world.add_argument("--seed", type=int, default=DEMO_SEED)
    world.add_argument("--force", action="store_true")
    world.set_defaults(func=cmd_world)
    dev = sub.add_parser("dev", help="the Dagster UI and daemon on the demo's instance")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--host", default="127.0.0.1")
    dev.set_defaults(func=cmd_dev)
    check = sub.add_parser("check", help="preflight: storage, catalog, sources, k8s, values")
    check.set_defaults(func=cmd_check)
    config = sub.add_parser("config", help="print the configuration in effect")
    config.add_argument(
        "--markdown", action="store_true", help="print the README's table of the variables"
    )
    config.set_defaults(func=cmd_config)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigurationError as exc:
        print(f"biocap: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
