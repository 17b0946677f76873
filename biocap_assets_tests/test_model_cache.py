"""The shared model cache: filled once by ``model_weights`` through huggingface_hub's own
download, read offline by the model-running pods through the loaders' own code.

The hub is a hub-shaped server on 127.0.0.1 (``hub_server.py``; nothing can be downloaded
from the real one here); the cache is what huggingface_hub writes, read by
huggingface_hub's offline resolution (vLLM's) and open_clip's ``download_pretrained``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import kubernetes_validate
import pytest

from biocap_assets.assets.captions import CaptionInference
from biocap_assets.assets.models import model_weights
from biocap_assets.resources import LauncherResource
from biocap_assets.resources.k8s import PodOptions, pod_manifest
from biocap_assets.training.pretrained import hub_repo
from biocap_assets_tests.hub_server import HubServer

K8S_VERSION = "1.33.0"
VLM = CaptionInference().model  # the caption model captioned_shards runs by default
CLIP_REPO, CLIP_FILES = hub_repo("ViT-B-16", "openai")  # open_clip's own registry
REPOS = {
    VLM: {
        "config.json": b'{"architectures": ["InternVLChatModel"]}',
        "model-00001-of-00002.safetensors": b"\x01" * 4096,
        "model-00002-of-00002.safetensors": b"\x02" * 2048,
        "tokenizer/tokenizer.json": b"{}",
    },
    CLIP_REPO: {
        "open_clip_pytorch_model.bin": b"\x03" * 1024,
        "pytorch_model.bin": b"\x04" * 8192,  # timm's copy: open_clip does not read it
        "README.md": b"# weights",
    },
}

# What a GPU pod does with HF_HUB_OFFLINE=1: vLLM resolves its model through
# huggingface_hub's snapshot_download; open_clip.create_model(pretrained='openai') through
# open_clip.pretrained.download_pretrained.
OFFLINE_LOAD = """
import json, sys
import open_clip
from huggingface_hub import snapshot_download
from biocap_assets.training.pretrained import check
vlm = snapshot_download(sys.argv[1])
clip = open_clip.pretrained.download_pretrained(open_clip.get_pretrained_cfg("ViT-B-16", "openai"))
print(json.dumps({"vlm": vlm, "clip": clip, "check": check("ViT-B-16", "openai").kind}))
"""


def _listing(folder) -> dict[str, float]:
    """Every entry under ``folder`` with its modification time."""
    return {
        os.path.join(root, name): os.lstat(os.path.join(root, name)).st_mtime
        for root, dirs, files in os.walk(folder)
        for name in dirs + files
    }


def _downloads(hub: HubServer) -> list[str]:
    return [path for method, path in hub.requests if method == "GET" and "/resolve/" in path]


@pytest.fixture
def hub():
    with HubServer(REPOS) as server:
        yield server


def test_model_weights_fills_the_cache_the_offline_loaders_read(hub, tmp_path, monkeypatch):
    cache = tmp_path / "models"
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(cache))
    result = dg.materialize([model_weights], resources={"launcher": LauncherResource()})
    assert result.success
    (mat,) = result.asset_materializations_for_node("model_weights")
    assert mat.metadata["repositories"].value == 2
    # the whole VLM repository, and of the CLIP repository only what open_clip reads
    expected = sum(len(b) for b in REPOS[VLM].values()) + len(
        REPOS[CLIP_REPO]["open_clip_pytorch_model.bin"]
    )
    assert mat.metadata["bytes"].value == expected
    assert HubServer.commit(VLM) in mat.metadata["models"].value
    assert str(cache / "hub") in mat.metadata["cache"].value
    assert not any("pytorch_model.bin" in p and "open_clip" not in p for p in _downloads(hub))

    # As a GPU pod reads it: offline, the hub cache given, HF_HOME elsewhere (writable)
    before, files = len(hub.requests), _listing(cache)
    pod_env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache / "hub"),
        "HF_HOME": str(tmp_path / "scratch"),
    }
    loaded = subprocess.run(
        [sys.executable, "-c", OFFLINE_LOAD, VLM],
        env={**os.environ, **pod_env},
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert len(hub.requests) == before  # offline: the hub was not asked
    assert _listing(cache) == files  # and nothing was written: the volume is read-only there
    assert found["vlm"].startswith(str(cache / "hub"))
    assert sorted(
        os.path.relpath(os.path.join(root, f), found["vlm"])
        for root, _, files in os.walk(found["vlm"])
        for f in files
    ) == sorted(REPOS[VLM])
    assert found["clip"].endswith("open_clip_pytorch_model.bin")
    assert found["check"] == "cached"  # the training step's preflight agrees

    # a second materialization finds everything in place: nothing is downloaded again
    downloaded = len(_downloads(hub))
    assert dg.materialize([model_weights], resources={"launcher": LauncherResource()}).success
    assert len(_downloads(hub)) == downloaded


def test_a_repository_the_hub_does_not_have_fails_naming_it(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "models"))
    result = dg.materialize(
        [model_weights],
        resources={"launcher": LauncherResource()},
        run_config={
            "ops": {"model_weights": {"config": {"models": ["org/absent"], "clip_pretrained": ""}}}
        },
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "org/absent" in failure.step_failure_data.error.message


@pytest.mark.parametrize("spec", ["org", "org/a/b", "../x", "dataset:"])
def test_a_model_name_that_is_not_a_hub_repository_is_refused(spec):
    from biocap_assets.common.model_cache import HubRepo

    with pytest.raises(ValueError, match="owner/name"):
        HubRepo.parse(spec)


# --- the pods: who mounts the cache, how, and their disk ---------------------------------------


def _pod(worker: str, **options) -> dict:
    body = pod_manifest(
        f"biocap-{worker}-x",
        worker,
        ["python", "-m", f"biocap_assets.workers.{worker}"],
        PodOptions(image="registry.example.org/biocap/gpu-worker:1", **options),
    )
    kubernetes_validate.validate(body, K8S_VERSION, strict=True)
    return body


def _mounts(body: dict) -> dict[str, tuple[str, bool]]:
    claims = {
        v["name"]: v["persistentVolumeClaim"]
        for v in body["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    return {
        claims[m["name"]]["claimName"]: (m["mountPath"], m.get("readOnly", False))
        for m in body["spec"]["containers"][0]["volumeMounts"]
        if m["name"] in claims
    }


def _env(body: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in body["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("worker", ["describe", "caption", "train", "evaluate"])
def test_model_pods_read_the_shared_cache_read_only_and_offline(worker):
    body = _pod(worker)
    assert _mounts(body)["biocap-models"] == ("/models", True)
    volume = next(v for v in body["spec"]["volumes"] if v["name"] == "models")
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    env = _env(body)
    assert env["HF_HUB_CACHE"] == "/models/hub" and env["HF_HUB_OFFLINE"] == "1"
    # what the libraries write (transformers' remote code for trust_remote_code, vLLM's
    # caches) goes to HF_HOME, which must be writable: the scratch volume, not the cache
    scratch = next(
        m["mountPath"]
        for m in body["spec"]["containers"][0]["volumeMounts"]
        if m["name"] == "scratch"
    )
    assert env["HF_HOME"].startswith(scratch + "/")
    resources = body["spec"]["containers"][0]["resources"]
    assert resources["requests"]["ephemeral-storage"] == resources["limits"]["ephemeral-storage"]
    assert resources["requests"]["ephemeral-storage"] == "40Gi"  # no 77 GB model in it


def test_only_the_model_weights_pod_writes_the_cache_and_reaches_the_hub():
    body = _pod("models")
    assert _mounts(body) == {"biocap-models": ("/models", False)}
    env = _env(body)
    assert env["HF_HUB_CACHE"] == "/models/hub" and "HF_HUB_OFFLINE" not in env
    assert "nvidia.com/gpu" not in body["spec"]["containers"][0]["resources"]["limits"]


def test_the_evaluation_volume_is_where_the_images_are_downloaded_and_read():
    assert _mounts(_pod("download")) == {"biocap-eval": ("/eval", False)}
    assert _mounts(_pod("evaluate"))["biocap-eval"] == ("/eval", False)
    wiki = _pod("wiki")
    assert _mounts(wiki) == {} and "HF_HOME" not in _env(wiki)
    assert wiki["spec"]["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "10Gi"
    # scratch is bounded by the same figure: a full /tmp evicts the pod, not the node
    scratch = next(v for v in wiki["spec"]["volumes"] if v["name"] == "scratch")
    assert scratch["emptyDir"]["sizeLimit"] == "10Gi"


def test_no_shared_volumes_when_the_claims_are_turned_off():
    body = _pod("caption", model_cache="", eval_volume="")
    assert _mounts(body) == {} and "HF_HUB_OFFLINE" not in _env(body)


@pytest.mark.slow
def test_the_model_weights_pod_fills_the_claim_the_gpu_pods_mount(hub, monkeypatch):
    """Through the k8s launcher (kubelet double: the claim is a folder every pod mounting it
    shares): the model_weights pod writes the cache on the claim, and a caption pod's
    offline huggingface_hub finds the model there."""
    from biocap_assets.resources import launcher as launcher_module
    from biocap_assets_tests.kubelet_double import KubeletDouble

    kubelet = KubeletDouble()
    monkeypatch.setattr(launcher_module, "_core_api", lambda: kubelet)
    launcher = LauncherResource(
        mode="k8s", image="biocap/gpu-worker:test", env={"HF_ENDPOINT": hub.endpoint}
    )
    result = dg.materialize(
        [model_weights],
        resources={"launcher": launcher},
        run_config={"ops": {"model_weights": {"config": {"clip_pretrained": ""}}}},
    )
    assert result.success
    (mat,) = result.asset_materializations_for_node("model_weights")
    assert mat.metadata["cache"].value == "PersistentVolumeClaim biocap/biocap-models at /models"
    claim = os.path.join(kubelet.claims, "biocap-models")
    assert os.path.isdir(os.path.join(claim, "hub", f"models--{VLM.replace('/', '--')}"))

    caption = _pod("caption")
    # the pod's env, its mounts as the double maps them
    env = {**os.environ, **_env(caption), "HF_HUB_CACHE": os.path.join(claim, "hub")}
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from huggingface_hub import snapshot_download; "
            "print(snapshot_download(sys.argv[1]))",
            VLM,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip().startswith(claim)


def test_an_offline_gpu_worker_names_the_model_missing_from_the_cache(hub, tmp_path):
    """Before vLLM starts (minutes of engine start-up on a GPU pod), the backend checks the
    cache as huggingface_hub resolves it offline; vLLM itself is not installed here, so a
    model that is cached gets as far as the import of vllm."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "models"), "HF_ENDPOINT": hub.endpoint}
    subprocess.run(
        [sys.executable, "-m", "biocap_assets.workers.models", "--model", VLM],
        env=env,
        capture_output=True,
        check=True,
    )
    script = (
        "import sys\n"
        "from biocap_assets.inference.factory import InferenceConfig, make_backend\n"
        "try:\n"
        "    config = InferenceConfig(backend='vllm', model=sys.argv[1], revision=sys.argv[2])\n"
        "    make_backend(config)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    offline = {**env, "HF_HUB_OFFLINE": "1"}

    def start(model: str, revision: str = "") -> str:
        return subprocess.run(
            [sys.executable, "-c", script, model, revision],
            env=offline,
            capture_output=True,
            text=True,
        ).stdout

    missing = start("org/absent")
    assert missing.startswith("ModelNotCached") and "org/absent" in missing
    assert "model_weights" in missing
    cached = start(VLM)
    assert cached.startswith("RuntimeError") and "needs vLLM" in cached
    # the commit model_weights cached is there too; another revision is not
    assert start(VLM, HubServer.commit(VLM)).startswith("RuntimeError")
    other = start(VLM, "v2")
    assert other.startswith("ModelNotCached") and f"{VLM}@v2" in other
    # a local folder is the loader's business
    assert start(str(tmp_path)).startswith("RuntimeError")


def test_clip_weights_named_with_their_file_resolve_to_that_file():
    """open_clip's registry names some weights as 'org/name/file.bin' (ViTamin): the
    repository is 'org/name', and that file (or its safetensors twin) is what is cached."""
    import open_clip

    repo, files = hub_repo("ViTamin-B", "datacomp1b")
    assert open_clip.get_pretrained_cfg("ViTamin-B", "datacomp1b")["hf_hub"] == (
        f"{repo}/{files[-1]}"
    )
    assert repo.count("/") == 1 and files[0].endswith(".safetensors")
    assert hub_repo("ViT-B-16", None) is None  # random initialisation: nothing to cache
