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
from biocap_assets.settings import ConfigurationError, Settings

_REPO_INSTANCE_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def _dagster_home(settings: Settings) -> Path:
    """``$DAGSTER_HOME``, or ``$BIOCAP_HOME/dagster`` set up with the repo's dagster.yaml."""
    if settings.dagster_home:
        return settings.dagster_home
    home = settings.home / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and _REPO_INSTANCE_YAML.exists():
        shutil.copyfile(_REPO_INSTANCE_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def cmd_demo(args: argparse.Namespace) -> int:
    if args.home:
        os.environ["BIOCAP_HOME"] = str(Path(args.home).resolve())
    settings = Settings.from_env()
    dagster_home = _dagster_home(settings)

    import dagster as dg

    from biocap_assets.jobs import run_everything

    instance = dg.DagsterInstance.get()
    results = run_everything(instance)
    print()
    for result in results:
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            source = mat.metadata.get("source")
            partition = f"[{mat.partition}]" if mat.partition else ""
            print(
                f"materialized {mat.asset_key.to_user_string()}{partition}"
                + (f"  (source: {source.value})" if source else "")
            )
        for event in result.get_asset_check_evaluations():
            state = "passed" if event.passed else "FAILED"
            print(f"check {event.asset_key.to_user_string()}:{event.check_name} {state}")
    _print_headline(results)
    print(f"\nDuckDB tables:  {settings.duckdb_path}")
    print(f"Storage root:   {settings.storage_url}")
    print(f"Demo world:     {settings.demo_root}")
    print(f"Dagster runs:   {dagster_home} (see them with `make dev`)")
    if not results or not results[-1].success:
        print("\nThe demo run failed; the error is above.", file=sys.stderr)
        return 1
    return 0


def _print_headline(results) -> None:
    """The evaluation's headline table, each number beside its chance level."""
    for result in results:
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            if mat.asset_key.to_user_string() == "eval_reports":
                print("\nEvaluation (percent; chance = a random scorer's expected value):")
                print(mat.metadata["headline"].value)
                print(f"Report: {mat.metadata['report_html'].value}")


def cmd_world(args: argparse.Namespace) -> int:
    from biocap_assets.demo.world import generate_demo_world

    world = generate_demo_world(args.out, seed=args.seed, force=args.force)
    print(f"demo world at {world.root}: {world.manifest['counts']}")
    return 0


def cmd_config(_: argparse.Namespace) -> int:
    settings = Settings.from_env()
    for name, value, doc in settings.describe():
        print(f"{name:28} {value:40} {doc}")
    resolved = {k: v for k, v in vars(settings).items() if k != "set_variables"}
    print(f"\nresolved: {redact(str(resolved))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from biocap_assets.demo.world import DEMO_SEED

    parser = argparse.ArgumentParser(prog="biocap", description="BioCAP data platform")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build the demo world and materialize the graph on it")
    demo.add_argument("--home", help="BIOCAP_HOME to use (default: $BIOCAP_HOME or ./.biocap)")
    demo.set_defaults(func=cmd_demo)
    world = sub.add_parser("world", help="write the demo world only")
    world.add_argument("out")
    world.add_argument("--seed", type=int, default=DEMO_SEED)
    world.add_argument("--force", action="store_true")
    world.set_defaults(func=cmd_world)
    config = sub.add_parser("config", help="print the configuration in effect")
    config.set_defaults(func=cmd_config)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigurationError as exc:
        print(f"biocap: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
