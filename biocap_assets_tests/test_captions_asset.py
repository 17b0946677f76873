"""captioned_shards through Dagster on the demo world, and the GPU worker pod spec."""

import tarfile

import duckdb
import kubernetes_validate
import pytest

from biocap_assets.common.files import open_read
from biocap_assets.resources.k8s import GPU_RESOURCE, PodOptions, pod_manifest
from biocap_assets.resources.launcher import worker_command


@pytest.mark.slow
def test_two_partitions_with_the_cpu_backend(fresh_defs, biocap_home, instance):
    assert fresh_defs.resolve_job_def("prepare_text").execute_in_process(instance=instance).success
    job = fresh_defs.resolve_job_def("caption_backfill")
    results = [
        job.execute_in_process(instance=instance, partition_key=key) for key in ("000001", "000003")
    ]
    assert all(r.success for r in results)
    with duckdb.connect(str(biocap_home / "biocap.duckdb"), read_only=True) as connection:
        rows = connection.execute(
            "SELECT partition_key, samples, captioned, skipped, backend, model, output_url "
            "FROM shard_stats ORDER BY partition_key"
        ).fetchall()
    assert [r[0] for r in rows] == ["000001", "000003"]
    assert all(r[1] > 150 and r[1] == r[2] and r[3] == 0 for r in rows)
    assert {(r[4], r[5]) for r in rows} == {("cpu", "template-captioner-v2")}
    (mat,) = results[0].asset_materializations_for_node("captioned_shards")
    assert mat.partition == "000001"
    assert mat.metadata["cpu_fallback"].value is True
    assert "| key" in mat.metadata["sample_captions"].value
    with open_read(rows[0][6]) as f, tarfile.open(fileobj=f) as tar:
        names = tar.getnames()
        captions = [tar.extractfile(n).read().decode() for n in names if n.endswith(".caption.txt")]
    assert len(captions) == rows[0][1]
    assert sum(": " in c for c in captions) > len(captions) / 2, "most captions carry traits"
    (check,) = results[1].get_asset_check_evaluations()
    assert check.passed and check.metadata["partition"].value == "000003"
    # Re-materializing a partition replaces its stats row, it does not add one.
    assert job.execute_in_process(instance=instance, partition_key="000001").success
    with duckdb.connect(str(biocap_home / "biocap.duckdb"), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM shard_stats").fetchall()[0][0] == 2


def test_backfills_run_one_partition_per_run_on_the_gpu_pool(fresh_defs):
    asset = fresh_defs.resolve_assets_def("captioned_shards")
    keys = ["000000", "000001", "000002", "000003", "val-000000"]  # the demo's val shard last
    assert asset.partitions_def.get_partition_keys() == keys
    assert asset.backfill_policy.max_partitions_per_run == 1
    spec = next(iter(asset.specs))
    assert asset.op.pool == "gpu"
    assert asset.op.retry_policy.max_retries == 2
    assert "captioned_share_above_threshold" in {c.name for c in asset.check_specs}
    assert spec.group_name == "captions"


def test_shard_partitions_follow_the_configured_pattern(monkeypatch, biocap_home):
    import importlib

    import biocap_assets.definitions as definitions

    monkeypatch.setenv("BIOCAP_SHARDS_URL", "s3://tol/shard-{000098..000101}.tar")
    defs = importlib.reload(definitions).defs
    keys = defs.resolve_assets_def("captioned_shards").partitions_def.get_partition_keys()
    assert keys == ["000098", "000099", "000100", "000101"]
    # validation shards (BioCAP's --val-data) get their own partitions after them
    monkeypatch.setenv("BIOCAP_VAL_SHARDS_URL", "s3://tol-val/shard-{000000..000001}.tar")
    defs = importlib.reload(definitions).defs
    keys = defs.resolve_assets_def("captioned_shards").partitions_def.get_partition_keys()
    assert keys == ["000098", "000099", "000100", "000101", "val-000000", "val-000001"]


@pytest.mark.parametrize("worker,gpu", [("caption", True), ("wiki", False)])
def test_worker_pod_spec_validates_against_the_kubernetes_schema(worker, gpu):
    options = PodOptions(
        image="registry.example.org/biocap-gpu:0.1.0",
        gpus=2,
        node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    )
    manifest = pod_manifest(
        f"biocap-{worker}-000001",
        worker,
        worker_command(worker, "python"),
        options,
        {"BIOCAP_STORAGE_URL": "s3://biocap/prod"},
    )
    assert kubernetes_validate.validate(manifest, "1.33", strict=True) is not None
    container = manifest["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", f"biocap_assets.workers.{worker}"]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["envFrom"] == [{"secretRef": {"name": "biocap-s3"}}]
    limits = container["resources"]["limits"]
    if gpu:
        assert limits[GPU_RESOURCE] == "2"
        assert manifest["spec"]["tolerations"][0]["key"] == GPU_RESOURCE
        assert manifest["spec"]["nodeSelector"]
    else:
        assert GPU_RESOURCE not in limits and "tolerations" not in manifest["spec"]


def test_an_invalid_pod_is_caught_by_the_schema():
    manifest = pod_manifest("x", "caption", ["python"], PodOptions(image="i"))
    manifest["spec"]["containers"][0]["resources"]["limits"]["memory"] = {"too": "much"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, "1.33", strict=True)
