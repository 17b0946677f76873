"""Our Helm values through dagster_k8s's own run launcher: the run pod the chart's
``K8sRunLauncher`` would create (test_deploy_runs, test_pod_security,
test_network_policies). ``K8sRunLauncher`` is configured as the chart's
``_run-launcher.tpl`` renders ``runLauncher.config.k8sRunLauncher``; with
``includeConfigInLaunchedRuns`` on, the user-code subchart's container context
(``dagsterUserDeployments.k8sContainerContext``) goes with the run.
"""

from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RELEASE_NAMESPACE = "biocap"


def helm_values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def launcher(values: dict, kubeconfig: Path):
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
        postgres_password_secret=values["global"]["postgresqlSecretName"],
        dagster_home="/opt/dagster/dagster_home",
        env_config_maps=[m["name"] for m in config.get("envConfigMaps", [])],
        env_secrets=[s["name"] for s in config.get("envSecrets", [])],
        resources=config.get("resources"),
        run_k8s_config={
            "container_config": run_k8s.get("containerConfig", {}),
            "pod_spec_config": run_k8s.get("podSpecConfig", {}),
        },
    )


def code_server_context(values: dict) -> dict | None:
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


def run_pod(values: dict, kubeconfig: Path):
    """The Job the launcher would create for one run of the ``biocap`` location."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_k8s.job import construct_dagster_k8s_job

    launcher_ = launcher(values, kubeconfig)
    image = "registry.example.org/biocap/user-code:0.1.0"
    origin = JobPythonOrigin(
        "caption_backfill",
        RepositoryPythonOrigin(
            executable_path="python",
            code_pointer=ModuleCodePointer("biocap_assets.definitions", "defs", None),
            container_image=image,
            container_context=code_server_context(values),
        ),
    )
    run = DagsterRun(job_name="caption_backfill", run_id="0" * 36, job_code_origin=origin)
    context = launcher_.get_container_context_for_run(run)
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=image, run_launcher=launcher_),
        args=["dagster", "api", "execute_run"],
        job_name="dagster-run-0",
        user_defined_k8s_config=context.run_k8s_config,
        component="run_worker",
    )
    return job, context


def granted(service_account: str) -> set[tuple[str, str]]:
    """(resource, verb) pairs the RBAC in deploy/k8s gives a service account."""
    objects = documents(DEPLOY / "k8s" / "rbac.yaml")
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
    pairs = set()
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        if any(s["name"] == service_account for s in binding["subjects"]):
            for rule in roles[binding["roleRef"]["name"]]["rules"]:
                pairs |= {(r, v) for r in rule["resources"] for v in rule["verbs"]}
    return pairs
