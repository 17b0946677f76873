"""What the NetworkPolicies let through in the biocap namespace, as IBM's
network-config-analyzer computes it from the manifests (no cluster, no CNI here).

The policies are the shipped ones (``deploy/k8s/networkpolicy.yaml``) plus the per-run
policies the launcher creates with two training Jobs. The pods carry the labels they get
on a cluster: worker, training and run pods as our launcher and dagster_k8s build them;
the chart's webserver, daemon and code server with the labels of its templates
(``_deployment-webserver.tpl``, ``deployment-daemon.yaml``, the user-deployments
subchart's ``deployment-user.yaml``), restated here. Ingress within the namespace must be
exactly: the ingress controller to the webserver's port, the webserver and the daemon to
the code server's port, and each training run's pods to each other.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from biocap_assets.resources.k8s import PodOptions, pod_manifest, training_manifests
from biocap_assets_tests.chart import DEPLOY, helm_values, run_pod

NCA = Path(__file__).resolve().parent.parent / ".venv" / "nca" / "bin" / "nca"
CHART = {"app.kubernetes.io/name": "dagster", "app.kubernetes.io/instance": "dagster"}


def _pod(name: str, labels: dict[str, str], namespace: str = "biocap") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }


def _allowed(policies: list[dict], pods: list[dict], folder: Path) -> set[str]:
    (folder / "policies.yaml").write_text(yaml.safe_dump_all(policies))
    (folder / "pods.yaml").write_text(yaml.safe_dump_all(pods))
    out = folder / "connectivity.txt"
    subprocess.run(
        [
            str(NCA),
            "--connectivity",
            "--resource_list",
            str(folder / "pods.yaml"),
            "--resource_list",
            str(folder / "policies.yaml"),
            "--output_endpoints",
            "pods",
            "--output_format",
            "txt_no_fw_rules",
            "--file_out",
            str(out),
        ],
        capture_output=True,
        timeout=300,
        check=False,  # its exit code counts queries, not errors; the file is the answer
    )
    lines = [line.strip() for line in out.read_text().splitlines() if "=>" in line]
    # Egress is open by design (S3, PostgreSQL, the hub are outside the cluster): keep the
    # connections into the biocap namespace.
    return {line for line in lines if line.split("=>")[1].strip().startswith("biocap/")}


@pytest.mark.skipif(not NCA.exists(), reason="network-config-analyzer: `make test` installs it")
def test_ingress_in_the_namespace_is_exactly_what_the_pipeline_needs(kubeconfig, tmp_path):
    options = PodOptions(image="i")
    run_a = training_manifests("biocap-train-a", options, 2, 8, [])
    run_b = training_manifests("biocap-train-b", options, 2, 8, [])
    policies = [
        *(d for d in yaml.safe_load_all((DEPLOY / "k8s" / "networkpolicy.yaml").read_text()) if d),
        *(m for m in (*run_a, *run_b) if m["kind"] == "NetworkPolicy"),
    ]
    run_job, _ = run_pod(helm_values(), kubeconfig)
    worker = pod_manifest("biocap-caption-x", "caption", ["python"], options)

    def trainers(job: dict, prefix: str) -> list[dict]:
        labels = job["spec"]["template"]["metadata"]["labels"]
        return [_pod(f"{prefix}-{i}", labels) for i in range(2)]

    pods = [
        _pod("webserver", {**CHART, "component": "dagster-webserver"}),
        _pod("daemon", {**CHART, "component": "dagster-daemon", "deployment": "daemon"}),
        _pod(
            "code-server",
            {
                "app.kubernetes.io/name": "dagster-user-deployments",
                "app.kubernetes.io/instance": "dagster",
                "component": "user-deployments",
                "deployment": "biocap",
            },
        ),
        _pod("run", run_job.spec.template.metadata.labels),
        _pod("worker", worker["metadata"]["labels"]),
        *trainers(run_a[-1], "train-a"),
        *trainers(run_b[-1], "train-b"),
        _pod("controller", {"app": "ingress-nginx"}, namespace="ingress-nginx"),
    ]
    allowed = _allowed(policies, pods, tmp_path)
    grpc, http = "{protocols:TCP,dst_ports:3030}", "{protocols:TCP,dst_ports:3000}"
    assert allowed == {
        f"ingress-nginx/controller => biocap/webserver : {http}",
        f"biocap/webserver => biocap/code-server : {grpc}",
        f"biocap/daemon => biocap/code-server : {grpc}",
        "biocap/train-a-0 => biocap/train-a-1 : All connections",
        "biocap/train-a-1 => biocap/train-a-0 : All connections",
        "biocap/train-b-0 => biocap/train-b-1 : All connections",
        "biocap/train-b-1 => biocap/train-b-0 : All connections",
    }

    # the control: without the default deny, everything would reach the worker and run pods
    open_policies = [p for p in policies if p["metadata"]["name"] != "default-deny-ingress"]
    opened = _allowed(open_policies, pods, tmp_path)
    assert "biocap/train-b-0 => biocap/worker : All connections" in opened
