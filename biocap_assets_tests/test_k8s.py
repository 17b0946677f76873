"""Kubernetes: failure reasons from pod objects, the pod and Job watch, and every manifest
we ship validated offline (kubernetes-validate) with least-privilege RBAC.

No cluster is reachable here: the API sits behind small doubles that replay pod objects
(biocap_assets_tests/k8s_api/, see its README).
"""

# (no `from __future__ import annotations`: Dagster reads the context annotations)

import copy
import json
import re
from pathlib import Path

import dagster as dg
import kubernetes_validate
import pytest
import yaml

from biocap_assets.resources.k8s_watch import (
    PodFailure,
    failure_reason,
    pending_reason,
    pod_status,
    wait_until_started,
)
from biocap_assets.resources.launcher import pod_name, run_job, run_pod
from biocap_assets.settings import ENV_VARS

API = Path(__file__).parent / "k8s_api"
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S_VERSION = "1.33"


def pod(name: str) -> dict:
    return json.loads((API / f"{name}.json").read_text())


class FakeClock:
    """Time that moves only when the watch sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class ReplayedPod:
    """Double of the API's pod reads: returns the recorded states in order, then the last."""

    def __init__(self, *states: str) -> None:
        self.states = [pod(s) for s in states]
        self.reads = 0
        self.deleted = False

    def read(self) -> dict:
        state = self.states[min(self.reads, len(self.states) - 1)]
        self.reads += 1
        return state

    def delete(self) -> None:
        self.deleted = True


# --- reasons -------------------------------------------------------------------------------


def test_unschedulable_pod_reports_the_schedulers_message():
    reason = pending_reason(pod("pending_no_gpu"))
    assert reason.startswith("not scheduled (Unschedulable)")
    assert "2 Insufficient nvidia.com/gpu" in reason


def test_image_pull_backoff_names_the_image():
    reason = pending_reason(pod("pending_image_pull"))
    assert "ImagePullBackOff" in reason
    assert "registry.example.org/biocap/gpu-worker:0.1.0" in reason


def test_oomkilled_names_the_memory_limit():
    reason = failure_reason(pod("oomkilled"))
    assert "OOMKilled (exit 137)" in reason and "120Gi" in reason


def test_evicted_says_why():
    reason = failure_reason(pod("evicted"))
    assert reason.startswith("the pod was evicted")
    assert "low on resource: ephemeral-storage" in reason


def test_a_worker_error_comes_from_the_termination_message():
    reason = failure_reason(pod("worker_error"))
    assert "exited with 1" in reason and "FileNotFoundError: s3://biocap-data" in reason


def test_phases():
    assert pod_status(pod("running")).phase == "Running"
    assert pod_status(pod("succeeded")).finished
    assert not pod_status(pod("pending_creating")).finished


# --- the pod watch -------------------------------------------------------------------------


def test_pending_past_the_timeout_fails_with_the_reason():
    clock, replay = FakeClock(), ReplayedPod("pending_no_gpu")
    with pytest.raises(PodFailure, match=r"still Pending after 6\d\ds.*Insufficient nvidia.com"):
        wait_until_started(replay.read, pending_timeout=600, poll=5, clock=clock, sleep=clock.sleep)
    assert 600 < clock.now <= 605  # gave up at the timeout, not a day later


def test_a_slow_start_within_the_timeout_is_waited_for():
    clock, replay = FakeClock(), ReplayedPod(*["pending_creating"] * 10, "running")
    started = wait_until_started(replay.read, 600, poll=5, clock=clock, sleep=clock.sleep)
    assert started["status"]["phase"] == "Running"


def _fake_timing() -> dict:
    """Timeouts of 10 min to start and 1 h to run, polled every 5 s of fake time."""
    clock = FakeClock()
    return {
        "pending_timeout": 600,
        "run_timeout": 3600,
        "poll": 5,
        "clock": clock,
        "sleep": clock.sleep,
    }


def _run(replay: ReplayedPod, keep_failed: bool = False, followed: list | None = None):
    return run_pod(
        read_pod=replay.read,
        delete_pod=replay.delete,
        on_running=lambda: (followed if followed is not None else []).append("logs"),
        what="worker caption (pod biocap/x)",
        keep_failed=keep_failed,
        **_fake_timing(),
    )


def test_a_successful_pod_is_followed_then_deleted():
    followed: list[str] = []
    replay = ReplayedPod("pending_creating", "running", "running", "succeeded")
    _run(replay, followed=followed)
    assert followed == ["logs"] and replay.deleted


def test_oomkilled_fails_the_step_with_the_reason_and_keeps_the_pod_when_asked():
    replay = ReplayedPod("running", "oomkilled")
    with pytest.raises(dg.Failure) as failure:
        _run(replay, keep_failed=True)
    assert "OOMKilled (exit 137)" in failure.value.description
    assert "kept for inspection" in failure.value.description
    assert not replay.deleted


def test_a_failed_pod_is_deleted_by_default():
    replay = ReplayedPod("pending_image_pull")
    with pytest.raises(dg.Failure, match="ImagePullBackOff"):
        _run(replay)
    assert replay.deleted


def test_pod_names_are_unique_dns_labels():
    names = {pod_name("visual_descriptions", "0123456789abcdef") for _ in range(50)}
    assert len(names) == 50
    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) and len(n) <= 63 for n in names)


# --- the training Job ----------------------------------------------------------------------


def _job_pod(state: str, index: int) -> dict:
    obj = copy.deepcopy(pod(state))
    obj["metadata"]["name"] = f"biocap-train-x-{index}"
    obj["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
    return obj


class ReplayedJob:
    def __init__(self, timeline: list[list[str]]):
        self.timeline, self.reads, self.deleted = timeline, 0, False

    def list_pods(self) -> list[dict]:
        states = self.timeline[min(self.reads, len(self.timeline) - 1)]
        self.reads += 1
        return [_job_pod(s, i) for i, s in enumerate(states)]

    def delete(self) -> None:
        self.deleted = True


def _run_job(job: ReplayedJob, followed: list[str], keep_failed: bool = False) -> None:
    run_job(
        list_pods=job.list_pods,
        delete=job.delete,
        on_rank0_running=followed.append,
        nnodes=2,
        what="training Job biocap/x",
        keep_failed=keep_failed,
        **_fake_timing(),
    )


def test_job_follows_rank_zero_and_succeeds_when_every_pod_does():
    followed: list[str] = []
    job = ReplayedJob(
        [["pending_creating", "pending_creating"], ["running", "running"], ["succeeded"] * 2]
    )
    _run_job(job, followed)
    assert followed == ["biocap-train-x-0"] and job.deleted


def test_job_fails_with_the_failing_pods_name_and_reason():
    job = ReplayedJob([["running", "running"], ["running", "oomkilled"]])
    with pytest.raises(dg.Failure) as failure:
        _run_job(job, [], keep_failed=True)
    assert "pod biocap-train-x-1" in failure.value.description
    assert "OOMKilled" in failure.value.description and not job.deleted


def test_a_job_stuck_pending_fails_at_the_timeout():
    job = ReplayedJob([["running", "pending_no_gpu"]])
    with pytest.raises(dg.Failure, match="Insufficient nvidia.com/gpu"):
        _run_job(job, [])
    assert job.deleted


# --- what we ship --------------------------------------------------------------------------


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", sorted((DEPLOY / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_manifest_validates(path):
    documents = _documents(path)
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_the_pipes_role_grants_only_what_the_launcher_and_biocap_check_use():
    objects = _documents(DEPLOY / "k8s" / "rbac.yaml")
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
    granted = {
        (resource, verb)
        for rule in roles["biocap-pipes"]["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {
        ("pods", "create"),
        ("pods", "get"),
        ("pods", "delete"),
        ("pods/log", "get"),
        ("persistentvolumeclaims", "get"),  # biocap check
    }
    training = {
        (resource, verb)
        for rule in roles["biocap-training-jobs"]["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert training == {
        ("jobs", "create"),
        ("jobs", "delete"),
        ("services", "create"),
        ("networkpolicies", "create"),
        ("pods", "list"),
    }
    for role in roles.values():
        assert all("*" not in rule["verbs"] + rule["resources"] for rule in role["rules"])
        assert role["metadata"]["namespace"] == "biocap"  # a Role, never a ClusterRole
    assert not any(o["kind"].startswith("Cluster") for o in objects)
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    assert accounts["biocap-worker"]["automountServiceAccountToken"] is False


def test_helm_values_wire_the_run_pods_to_the_rbac_and_secrets():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    run_pod_spec = launcher["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]
    bindings = [o for o in _documents(DEPLOY / "k8s" / "rbac.yaml") if o["kind"] == "RoleBinding"]
    assert all(
        b["subjects"]
        == [
            {
                "kind": "ServiceAccount",
                "name": run_pod_spec["serviceAccountName"],
                "namespace": "biocap",
            }
        ]
        for b in bindings
    )
    secrets = {o["metadata"]["name"] for o in _documents(DEPLOY / "k8s" / "secrets.example.yaml")}
    deployment = values["dagster-user-deployments"]["deployments"][0]
    # Dagster's own password Secret is the chart's to read; ours go to the code and run pods
    postgres_secret = values["global"]["postgresqlSecretName"]
    assert values["generatePostgresqlPasswordSecret"] is False and postgres_secret in secrets
    assert {s["name"] for s in deployment["envSecrets"]} == secrets - {postgres_secret}
    assert {s["name"] for s in launcher["config"]["k8sRunLauncher"]["envSecrets"]} == (
        secrets - {postgres_secret}
    )
    # an external PostgreSQL: the bundled one cannot run under the restricted standard
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    # the webserver binds an unprivileged port, and is probed there
    webserver = values["dagsterWebserver"]
    assert webserver["service"]["port"] >= 1024
    assert webserver["readinessProbe"]["httpGet"]["port"] == webserver["service"]["port"]
    queue = values["dagsterDaemon"]["runCoordinator"]
    assert queue["type"] == "QueuedRunCoordinator"
    assert queue["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] > 0
    (settings,) = _documents(DEPLOY / "k8s" / "biocap-env.yaml")
    for name in settings["data"]:
        assert name in ENV_VARS, f"{name} is not a biocap setting"
    assert deployment["envConfigMaps"] == [{"name": settings["metadata"]["name"]}]
    for component in (values["dagsterWebserver"], deployment, values["dagsterDaemon"]):
        assert component["podSecurityContext"]["runAsNonRoot"] is True
        assert "memory" in component["resources"]["limits"]


@pytest.mark.parametrize("dockerfile", sorted((DEPLOY / "docker").glob("Dockerfile.*")))
def test_images_run_as_a_non_root_user(dockerfile):
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.MULTILINE)
    assert users and not users[-1].startswith(("0", "root"))


# --- the k8s launcher end to end, against a kubelet double -----------------------------------


@pytest.fixture
def kubelet(monkeypatch):
    from biocap_assets.resources import launcher as launcher_module
    from biocap_assets_tests.kubelet_double import ApiRecorder, KubeletDouble

    double = KubeletDouble()
    double.calls = set()  # what the launcher called, through ApiRecorder
    monkeypatch.setattr(launcher_module, "_core_api", lambda: ApiRecorder(double, double.calls))
    return double


@pytest.mark.slow
def test_k8s_launcher_runs_shard_partitions_as_pods_through_pipes(biocap_home, kubelet):
    from biocap_assets.assets.captions import build_captioned_shards
    from biocap_assets.definitions import build_resources
    from biocap_assets.resources import LauncherResource
    from biocap_assets.settings import Settings
    from biocap_assets_tests.chart import granted
    from biocap_assets_tests.kubelet_double import RBAC_OF_CALL

    settings = Settings.from_env()
    resources = {
        **build_resources(settings),
        "launcher": LauncherResource(
            mode="k8s", image="registry.example.org/biocap/gpu-worker:test", namespace="biocap"
        ),
    }
    shards = build_captioned_shards(settings)
    result = dg.materialize([shards], partition_key="000001", resources=resources)
    assert result.success
    (mat,) = result.asset_materializations_for_node("captioned_shards")
    # the numbers came back from the pod over Pipes (its log stream)
    assert mat.metadata["captioned"].value > 0
    assert mat.metadata["backend"].value == "cpu"
    bodies = [p["body"] for p in kubelet.pods.values()]
    for body in bodies:  # the pods exactly as the launcher created them
        kubernetes_validate.validate(body, K8S_VERSION, strict=True)
    caption = next(b for b in bodies if b["metadata"]["labels"]["biocap/worker"] == "caption")
    container = caption["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {e["name"] for e in container["env"]} >= {"DAGSTER_PIPES_CONTEXT"}
    assert sorted(kubelet.deleted) == sorted(kubelet.pods)  # every pod cleaned up
    assert {RBAC_OF_CALL[call] for call in kubelet.calls} <= granted("biocap-runs")
    assert "read_namespaced_pod_log" in kubelet.calls  # Pipes over the pod's logs


@pytest.mark.slow
@pytest.mark.parametrize("keep", [False, True])
def test_a_failing_worker_pod_fails_the_step_with_its_own_error(kubelet, tmp_path, keep):
    from biocap_assets.resources import LauncherResource

    @dg.asset
    def shard(context: dg.AssetExecutionContext, launcher: LauncherResource) -> None:
        launcher.run(
            context,
            "caption",
            extras={"input": str(tmp_path / "missing.tar"), "output": str(tmp_path / "o.tar")},
        )

    launcher = LauncherResource(mode="k8s", image="biocap/gpu-worker:test", keep_failed_pods=keep)
    result = dg.materialize([shard], resources={"launcher": launcher}, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message
    assert "exited with 1" in message and "missing.tar" in message
    assert ("kept for inspection" in message) == keep
    assert bool(kubelet.deleted) == (not keep)


@pytest.mark.slow
def test_multi_node_training_runs_as_an_indexed_job_with_pipes_from_rank_zero(
    biocap_home, kubelet, monkeypatch
):
    """Two "nodes" (pods of an Indexed Job, processes here) train one checkpoint together
    under torchrun's static rendezvous; only rank 0 reports to Dagster. The double starts
    the pods in reverse index order: rank 0 still lands on pod index 0, the one followed."""
    from biocap_assets.assets.captions import build_captioned_shards
    from biocap_assets.assets.training import clip_checkpoint
    from biocap_assets.definitions import build_resources
    from biocap_assets.resources import LauncherResource
    from biocap_assets.resources import launcher as launcher_module
    from biocap_assets.settings import Settings
    from biocap_assets_tests.chart import granted
    from biocap_assets_tests.kubelet_double import RBAC_OF_CALL, ApiRecorder, JobControllerDouble

    jobs = JobControllerDouble(kubelet)
    monkeypatch.setattr(
        launcher_module, "_batch_api", lambda core: ApiRecorder(jobs, kubelet.calls)
    )
    monkeypatch.setattr(
        launcher_module, "_networking_api", lambda core: ApiRecorder(jobs, kubelet.calls)
    )
    policies = []
    record = jobs.create_namespaced_network_policy
    monkeypatch.setattr(
        jobs,
        "create_namespaced_network_policy",
        lambda ns, body: policies.append(body) or record(ns, body),
    )
    settings = Settings.from_env()
    local = build_resources(settings)
    shards = build_captioned_shards(settings)
    for key in ("000000", "000001", "000002", "000003"):
        assert dg.materialize([shards], partition_key=key, resources=local).success

    k8s = {**local, "launcher": LauncherResource(mode="k8s", image="biocap/gpu-worker:test")}
    config = {"nnodes": 2, "nproc_per_node": 1, "overrides": {"epochs": 1}}
    result = dg.materialize(
        [shards.to_source_asset(), clip_checkpoint],
        resources=k8s,
        run_config={"ops": {"clip_checkpoint": {"config": config}}},
    )
    assert result.success
    (mat,) = result.asset_materializations_for_node("clip_checkpoint")
    assert mat.metadata["world_size"].value == 2  # both pods joined one process group
    assert mat.metadata["epochs"].value == 1
    (job,) = jobs.jobs
    # Job, Service and NetworkPolicy cleaned up
    assert jobs.deleted_jobs == [job] and jobs.services == [] and jobs.policies == {}
    # the run's policy admits exactly this run's pods, from exactly this run's pods
    (policy,) = policies
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {"matchLabels": selector}}]}]
    for pod in jobs.jobs[job]:
        labels = kubelet.pods[pod]["body"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    # every API call the launcher made is one the run pods' account may make
    assert "create_namespaced_network_policy" in kubelet.calls
    assert {RBAC_OF_CALL[call] for call in kubelet.calls} <= granted("biocap-runs")
    # every pod ran torchrun with its own node rank; one Pipes channel (rank 0's) reported
    scripts = [
        kubelet.pods[p]["body"]["spec"]["containers"][0]["command"][-1] for p in jobs.jobs[job]
    ]
    assert all('--node_rank="${JOB_COMPLETION_INDEX}"' in s for s in scripts)


def test_a_training_job_whose_network_policy_is_refused_leaves_nothing_behind(kubelet, monkeypatch):
    """The Job is created first and owns its Service and NetworkPolicy; when one of those
    is refused (here: the Role predates NetworkPolicies), the Job is deleted again and,
    through the garbage collector, everything it owns: nothing is left to pile up."""
    from biocap_assets.resources import LauncherResource
    from biocap_assets.resources import launcher as launcher_module
    from biocap_assets_tests.kubelet_double import JobControllerDouble

    jobs = JobControllerDouble(kubelet)
    monkeypatch.setattr(launcher_module, "_batch_api", lambda core: jobs)
    monkeypatch.setattr(launcher_module, "_networking_api", lambda core: jobs)

    def forbidden(namespace, body):
        raise PermissionError("networkpolicies is forbidden: cannot create")

    monkeypatch.setattr(jobs, "create_namespaced_network_policy", forbidden)

    @dg.asset
    def trained(context: dg.AssetExecutionContext, launcher: LauncherResource) -> None:
        launcher.run_training_job(context, extras={}, nnodes=2, gpus_per_node=1)

    launcher = LauncherResource(mode="k8s", image="biocap/gpu-worker:test")
    result = dg.materialize([trained], resources={"launcher": launcher}, raise_on_error=False)
    assert not result.success
    (job,) = jobs.jobs
    assert jobs.deleted_jobs == [job]
    assert jobs.services == [] and jobs.policies == {}
    assert set(kubelet.deleted) == set(jobs.jobs[job])  # its pods too
