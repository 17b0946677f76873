"""Run pods as the Dagster chart and dagster_k8s would make them from our Helm values.

No cluster is reachable here, so the pod is built by dagster_k8s's own code, the code the
run launcher runs (``chart.py``): ``K8sRunLauncher`` as the chart configures it,
``K8sContainerContext.create_for_run`` and ``construct_dagster_k8s_job``.
"""

from __future__ import annotations

import copy

from biocap_assets.settings import EVAL_MOUNT, Settings
from biocap_assets_tests.chart import DEPLOY, documents, granted, helm_values, run_pod
from biocap_assets_tests.kubelet_double import RBAC_OF_CALL

# What the launcher calls (every call the doubles see must be in RBAC_OF_CALL; the k8s
# tests hold it to that) and `biocap check` (resources/preflight.py: the volumes' claims).
LAUNCHER_NEEDS = set(RBAC_OF_CALL.values()) | {("persistentvolumeclaims", "get")}


def test_run_pods_run_as_biocap_runs_with_the_run_sizes(kubeconfig):
    values = helm_values()
    job, _ = run_pod(values, kubeconfig)
    pod = job.spec.template.spec
    assert pod.service_account_name == "biocap-runs"
    assert granted(pod.service_account_name) >= LAUNCHER_NEEDS
    run_sizes = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"][
        "containerConfig"
    ]["resources"]
    (container,) = pod.containers
    assert container.resources.requests == run_sizes["requests"]
    assert container.resources.limits == run_sizes["limits"]
    # the settings and the secrets reach the run pod
    sources = {(e.config_map_ref or e.secret_ref).name for e in container.env_from}
    assert {"biocap-env", "biocap-s3", "biocap-ducklake"} <= sources
    # the evaluation volume, where the shipped settings put the suite, read-only
    (settings,) = documents(DEPLOY / "k8s" / "biocap-env.yaml")
    claims = {
        v.name: v.persistent_volume_claim.claim_name
        for v in pod.volumes or []
        if v.persistent_volume_claim
    }
    mounted = {claims[m.name]: (m.mount_path, m.read_only) for m in container.volume_mounts}
    assert mounted[settings["data"]["BIOCAP_K8S_EVAL_VOLUME"]] == (EVAL_MOUNT, True)


def test_the_shipped_settings_go_together_with_the_shipped_volumes():
    """biocap-env.yaml read by Settings, as a run pod reads it: a production configuration
    with no inconsistency, its claims the ReadWriteMany ones volumes.yaml creates."""
    (settings,) = documents(DEPLOY / "k8s" / "biocap-env.yaml")
    parsed = Settings.from_env(settings["data"])
    assert parsed.production_shaped and parsed.inconsistencies() == []
    claims = {
        o["metadata"]["name"]: o["spec"]["accessModes"]
        for o in documents(DEPLOY / "k8s" / "volumes.yaml")
    }
    for claim in (parsed.k8s_model_cache, parsed.k8s_eval_volume):
        assert claims[claim] == ["ReadWriteMany"]
    # a path off the evaluation volume is named: the worker pods would not see it
    moved = Settings.from_env({**settings["data"], "BIOCAP_EVAL_DATA": "/data/eval"})
    assert any("BIOCAP_EVAL_DATA=/data/eval" in p for p in moved.inconsistencies())


def test_with_the_code_servers_context_the_run_pods_would_run_as_the_charts_account(
    kubeconfig,
):
    """Why includeConfigInLaunchedRuns is off: through dagster_k8s's merge, the code
    server's account and sizes win over runK8sConfig."""
    values = copy.deepcopy(helm_values())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    deployment["includeConfigInLaunchedRuns"] = {"enabled": True}
    job, _ = run_pod(values, kubeconfig)
    pod = job.spec.template.spec
    assert pod.service_account_name == values["global"]["serviceAccountName"]
    assert not granted(pod.service_account_name) >= LAUNCHER_NEEDS
    # (merged key by key: the code server's cpu and memory over the run's)
    assert (
        deployment["resources"]["requests"].items() <= pod.containers[0].resources.requests.items()
    )
