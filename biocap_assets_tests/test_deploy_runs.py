"""Run pods as the Dagster chart and dagster_k8s would make them from our Helm values.

No cluster is reachable here, so the pod is built by dagster_k8s's own code, the code the
run launcher runs: ``K8sRunLauncher`` configured as the chart's ``_run-launcher.tpl``
renders ``runLauncher.config.k8sRunLauncher``, ``K8sContainerContext.create_for_run`` with
the container context the user-code subchart sends when ``includeConfigInLaunchedRuns`` is
on (``dagsterUserDeployments.k8sContainerContext``), and ``construct_dagster_k8s_job``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RELEASE_NAMESPACE = "biocap"


def _values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _launcher(values: dict, kubeconfig: Path):
    """A K8sRunLauncher with the config the chart renders from ``values``."""
    from dagster_k8s import K8sRunLauncher

    config = values["runLauncher"]["config"]["k8sRunLauncher"]
    run_k8s = config.get("runK8sConfig", {})
    return K8sRunLauncher(
        load_incluster_config=False,
        kubeconfig_file=str(kubeconfig),  # the chart: in-cluster; here a file, never used
        job_namespace=config.get("jobNamespace") or RELEASE_NAMESPACE,
        image_pull_policy=config.get("imagePullPolicy"),
        service_account_name=values["global"]["serviceAccountName"],
        instance_config_map="dagster-instance",
        postgres_password_secret="dagster-postgresql-secret",
        dagster_home="/opt/dagster/dagster_home",
        env_config_maps=[m["name"] for m in config.get("envConfigMaps", [])],
        env_secrets=[s["name"] for s in config.get("envSecrets", [])],
        resources=config.get("resources"),
        run_k8s_config={
            "container_config": run_k8s.get("containerConfig", {}),
            "pod_spec_config": run_k8s.get("podSpecConfig", {}),
        },
    )


def _code_server_context(values: dict) -> dict | None:
    """What the user-code subchart sends with every run (None when it sends nothing)."""
    deployment = values["dagster-user-deployments"]["deployments"][0]
    if not deployment.get("includeConfigInLaunchedRuns", {}).get("enabled"):
        return None
    return {
        "k8s": {
            "image_pull_policy": deployment["image"]["pullPolicy"],
            "env_config_maps": [f"dagster-dagster-user-deployments-{deployment['name']}-user-env"]
            + [m["name"] for m in deployment.get("envConfigMaps", [])],
            "env_secrets": [s["name"] for s in deployment.get("envSecrets", [])],
            **({"resources": deployment["resources"]} if deployment.get("resources") else {}),
            "namespace": RELEASE_NAMESPACE,
            "service_account_name": values["global"]["serviceAccountName"],
        }
    }


def _run_pod(values: dict, kubeconfig: Path):
    """The Job the launcher would create for one run of the ``biocap`` location."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_k8s.job import construct_dagster_k8s_job

    launcher = _launcher(values, kubeconfig)
    image = "registry.example.org/biocap/user-code:0.1.0"
    origin = JobPythonOrigin(
        "caption_backfill",
        RepositoryPythonOrigin(
            executable_path="python",
            code_pointer=ModuleCodePointer("biocap_assets.definitions", "defs", None),
            container_image=image,
            container_context=_code_server_context(values),
        ),
    )
    run = DagsterRun(job_name="caption_backfill", run_id="0" * 36, job_code_origin=origin)
    context = launcher.get_container_context_for_run(run)
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=image, run_launcher=launcher),
        args=["dagster", "api", "execute_run"],
        job_name="dagster-run-0",
        user_defined_k8s_config=context.run_k8s_config,
        component="run_worker",
    )
    return job, context


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    return path


def _granted(service_account: str) -> set[tuple[str, str]]:
    """(resource, verb) pairs the RBAC in deploy/k8s gives a service account."""
    objects = _documents(DEPLOY / "k8s" / "rbac.yaml")
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
    granted = set()
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        if any(s["name"] == service_account for s in binding["subjects"]):
            for rule in roles[binding["roleRef"]["name"]]["rules"]:
                granted |= {(r, v) for r in rule["resources"] for v in rule["verbs"]}
    return granted


# What our launcher calls (resources/launcher.py): worker pods through Pipes, and for
# multi-node training an Indexed Job with a headless Service.
LAUNCHER_NEEDS = {
    ("pods", "create"),
    ("pods", "get"),
    ("pods", "delete"),
    ("pods/log", "get"),
    ("pods", "list"),
    ("jobs", "create"),
    ("jobs", "delete"),
    ("services", "create"),
    ("services", "delete"),
}


def test_run_pods_run_as_biocap_runs_with_the_run_sizes(kubeconfig):
    values = _values()
    job, _ = _run_pod(values, kubeconfig)
    pod = job.spec.template.spec
    assert pod.service_account_name == "biocap-runs"
    assert _granted(pod.service_account_name) >= LAUNCHER_NEEDS
    run_sizes = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"][
        "containerConfig"
    ]["resources"]
    (container,) = pod.containers
    assert container.resources.requests == run_sizes["requests"]
    assert container.resources.limits == run_sizes["limits"]
    # the settings and the secrets reach the run pod
    sources = {(e.config_map_ref or e.secret_ref).name for e in container.env_from}
    assert {"biocap-env", "biocap-s3", "biocap-ducklake"} <= sources


def test_with_the_code_servers_context_the_run_pods_would_run_as_the_charts_account(
    kubeconfig,
):
    """Why includeConfigInLaunchedRuns is off: through dagster_k8s's merge, the code
    server's account and sizes win over runK8sConfig."""
    values = copy.deepcopy(_values())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    deployment["includeConfigInLaunchedRuns"] = {"enabled": True}
    job, _ = _run_pod(values, kubeconfig)
    pod = job.spec.template.spec
    assert pod.service_account_name == values["global"]["serviceAccountName"]
    assert not _granted(pod.service_account_name) >= LAUNCHER_NEEDS
    assert pod.containers[0].resources.requests == deployment["resources"]["requests"]
