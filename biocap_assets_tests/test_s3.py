"""The storage root on a real S3 server (SeaweedFS on 127.0.0.1): artifacts, tables, the
whole demo graph, and a wrong key refused."""

import io
import json
import tarfile

import dagster as dg
import pyarrow.parquet as pq
import pytest
import torch

from biocap_assets.resources import StorageResource
from biocap_assets_tests.s3_server import ACCESS_KEY, BUCKET, SECRET_KEY, seaweedfs


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_env(s3, monkeypatch):
    endpoint, _ = s3
    for name, value in {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()
    return s3


def _keys(client, prefix):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.mark.slow
def test_atomic_writes_on_s3_and_a_wrong_key_is_refused(s3_env, monkeypatch):
    _, client = s3_env
    storage = StorageResource(root_url=f"s3://{BUCKET}/unit")
    storage.write_bytes("a", "b.bin", data=b"payload")
    assert client.get_object(Bucket=BUCKET, Key="unit/a/b.bin")["Body"].read() == b"payload"
    with pytest.raises(RuntimeError), storage.open_atomic("a", "half.bin") as f:
        f.write(b"x" * (6 * 1024 * 1024))  # past one multipart chunk
        raise RuntimeError("killed")
    assert "unit/a/half.bin" not in _keys(client, "unit/"), "a failed upload is never visible"

    import fsspec

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    fsspec.filesystem("s3").clear_instance_cache()
    with pytest.raises(PermissionError):
        StorageResource(root_url=f"s3://{BUCKET}/unit").write_bytes("c.bin", data=b"no")


def _read_back(key: str, body: bytes) -> None:
    """Open an artifact the way its reader would; raises if it is truncated or corrupt."""
    if key.endswith(".parquet"):
        pq.read_table(io.BytesIO(body))
    elif key.endswith(".json"):
        json.loads(body)
    elif key.endswith(".tar"):
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            for member in tar.getmembers():
                tar.extractfile(member).read()
    elif key.endswith(".pt"):
        torch.load(io.BytesIO(body), map_location="cpu", weights_only=False)
    elif key.endswith(".safetensors"):
        from safetensors.torch import load

        load(body)
    elif key.endswith((".html", ".md", ".txt", ".csv")):
        body.decode("utf-8")
    else:
        raise AssertionError(f"unexpected artifact {key}: add its reader here")


@pytest.mark.slow
def test_whole_demo_graph_on_s3_with_a_ducklake_catalog(
    s3_env, postgres, biocap_home, monkeypatch, demo_world
):
    """Production's shape: storage root on S3, tables in DuckLake (PostgreSQL + S3 data)."""
    import importlib

    import biocap_assets.definitions as definitions
    from biocap_assets.jobs import run_everything

    _, client = s3_env
    client.upload_file(str(demo_world.catalog), BUCKET, "inputs/catalog.csv")
    monkeypatch.setenv("BIOCAP_STORAGE_URL", f"s3://{BUCKET}/demo-run")
    monkeypatch.setenv(
        "BIOCAP_DUCKLAKE_CATALOG", postgres.ducklake_catalog(postgres.create_database("s3lake"))
    )
    monkeypatch.setenv("BIOCAP_DEMO", "1")  # production's shape, on the demo's data on purpose
    defs = importlib.reload(definitions).defs  # the definitions read this test's environment
    with dg.DagsterInstance.ephemeral() as instance:
        results = run_everything(instance)
    assert all(r.success for r in results)
    assert not (biocap_home / "biocap.duckdb").exists(), "production writes no DuckDB file"

    keys = _keys(client, "demo-run/")
    assert "demo-run/tables/taxa.parquet" in keys
    assert sum(k.startswith("demo-run/shards/captioned/") for k in keys) == 4 + 1  # 1: val
    assert any(k.endswith("epoch_8.pt") for k in keys)
    assert any(k.endswith("report-epoch_8.html") for k in keys)
    assert any(k.startswith("demo-run/wiki/parts/") for k in keys)
    assert any(k.startswith("demo-run/lake/") and k.endswith(".parquet") for k in keys)
    for key in keys:  # every artifact in the bucket reads back whole
        _read_back(key, client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    shard = client.get_object(Bucket=BUCKET, Key="demo-run/shards/captioned/shard-000000.tar")
    with tarfile.open(fileobj=io.BytesIO(shard["Body"].read())) as tar:
        assert any(n.endswith(".caption.txt") for n in tar.getnames())
    with dg.build_resources({"duckdb": defs.resources["duckdb"]}) as built:
        connection_cm = built.duckdb.get_connection()
    with connection_cm as connection:
        assert connection.execute("SELECT count(*) FROM eval_results").fetchall()[0][0] > 10
        shards = connection.execute("SELECT count(*) FROM shard_stats").fetchall()[0][0]
        assert shards == 4 + 1  # the training shards and the validation shard

    # The TreeOfLife catalog itself read from S3 by DuckDB through fsspec.
    monkeypatch.setenv("BIOCAP_CATALOG_URL", f"s3://{BUCKET}/inputs/catalog.csv")
    defs = importlib.reload(definitions).defs
    from biocap_assets.assets.taxa import no_duplicate_taxa, taxa_table

    result = dg.materialize([taxa_table, no_duplicate_taxa], resources=defs.resources)
    assert result.success
    (mat,) = result.asset_materializations_for_node("taxa_table")
    assert mat.metadata["taxa"].value == 32


@pytest.mark.slow
def test_s3_without_credentials_stops_before_anything_is_written(
    s3, biocap_home, monkeypatch, tmp_path
):
    """`biocap check` names the missing credentials, and a run fails at its start: the
    taxa table is not written to DuckDB first."""
    import importlib
    import subprocess
    import sys
    from pathlib import Path

    import duckdb

    import biocap_assets.definitions as definitions

    endpoint, _ = s3
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("BIOCAP_STORAGE_URL", f"s3://{BUCKET}/no-credentials")
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()

    biocap = str(Path(sys.executable).with_name("biocap"))
    done = subprocess.run([biocap, "check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout
    assert "BIOCAP_STORAGE_URL" in done.stdout and "needs S3 credentials" in done.stdout
    assert "AWS_ACCESS_KEY_ID" in done.stdout

    defs = importlib.reload(definitions).defs
    result = defs.resolve_job_def("prepare_text").execute_in_process(raise_on_error=False)
    assert not result.success
    # the resource fails at the step's start, with the check's words
    said = [str(e.event_specific_data) for e in result.all_events]
    assert any("needs S3 credentials" in s for s in said), said
    database = biocap_home / "biocap.duckdb"
    if database.exists():
        with duckdb.connect(str(database), read_only=True) as connection:
            tables = {t for (t,) in connection.execute("SHOW TABLES").fetchall()}
        assert "taxa" not in tables, "nothing is written before the checks pass"
