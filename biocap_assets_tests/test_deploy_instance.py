"""The Dagster instance the Helm chart gives every run pod, on a real PostgreSQL server.

The chart's ``configmap-instance.yaml`` stores runs, events and schedules with
``dagster_postgres`` (``helpers/instance/_postgresql.tpl``: user and database from the
values, the password from ``DAGSTER_PG_PASSWORD``). The user-code image must be able to
load that instance, or every run fails at start; here it is loaded from such a
``dagster.yaml`` built from ``deploy/helm/values.yaml`` and a materialization runs on it.
(Without the values' ``postgresqlScheme``, SQLAlchemy 2.1 asks for psycopg 3 and the
instance does not load: this test found that.)
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

VALUES = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "values.yaml"


def chart_instance_yaml(
    values: dict, hostname: str, port: int, db_name: str, username: str | None = None
) -> dict:
    """The storage part of the chart's dagster.yaml, as its templates lay it out (the server
    given here stands in for the chart's or an external one)."""
    postgresql = values["postgresql"]
    config = {
        "postgres_db": {
            "username": username or postgresql["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": hostname,
            "db_name": db_name,
            "port": port,
            "params": postgresql.get("postgresqlParams", {}),
            # the chart writes the scheme only when the values set one
            **(
                {"scheme": postgresql["postgresqlScheme"]}
                if "postgresqlScheme" in postgresql
                else {}
            ),
        }
    }
    return {
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": config,
        },
        "run_storage": {
            "module": "dagster_postgres.run_storage",
            "class": "PostgresRunStorage",
            "config": config,
        },
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": config,
        },
        "telemetry": {"enabled": False},
    }


@pytest.mark.slow
def test_a_run_on_the_charts_postgres_instance(postgres, fresh_defs, tmp_path, monkeypatch):
    values = yaml.safe_load(VALUES.read_text())
    db_name = postgres.create_database("dagster_runs")
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance_yaml = chart_instance_yaml(
        values, postgres.host, postgres.port, db_name, username=postgres.user
    )
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused-with-trust-auth")

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = fresh_defs.resolve_job_def("prepare_text").execute_in_process(instance=instance)
        assert result.success
        run_id = result.run_id

    # another process's view: the run, its events and the schedule storage, from PostgreSQL
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        materialized = instance.get_latest_materialization_event(dg.AssetKey("taxa_table"))
        assert materialized is not None and materialized.run_id == run_id
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert instance.schedule_storage.all_instigator_state() == []
