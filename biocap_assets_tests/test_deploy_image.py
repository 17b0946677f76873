"""The GPU worker image installs one lock, resolved by pip, that agrees with vLLM's own
requirements and with the project's: no backtracking, no second resolution at build."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DOCKER = Path(__file__).resolve().parent.parent / "deploy" / "docker"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# the image: CPython 3.11 on Linux x86-64 (Dockerfile.gpu-worker)
IMAGE = {
    "python_version": "3.11",
    "python_full_version": "3.11.13",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "extra": "",
}


def _lines(name: str) -> list[str]:
    text = (DOCKER / name).read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _lock() -> dict[str, str]:
    pins = {}
    for line in _lines("gpu-worker.lock.txt"):
        name, version = line.split("==")
        pins[canonicalize_name(name)] = version
    return pins


def _applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(IMAGE)


def test_the_lock_meets_every_requirement_vllm_declares():
    lock = _lock()
    required = [Requirement(r) for r in _lines("gpu-worker.vllm-requires.txt")]
    checked = []
    for requirement in filter(_applies, required):
        name = canonicalize_name(requirement.name)
        assert name in lock, f"vLLM requires {requirement}; the lock has no {name}"
        assert requirement.specifier.contains(lock[name], prereleases=True), (
            f"vLLM requires {requirement}; the lock has {name}=={lock[name]}"
        )
        checked.append(name)
    assert {"torch", "torchvision"} <= set(checked)
    torch = next(r for r in required if canonicalize_name(r.name) == "torch")
    assert str(torch.specifier).startswith("=="), "a vLLM release pins its torch"


def test_the_lock_meets_the_projects_requirements_and_its_gpu_extra():
    lock = _lock()
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    (gpu,) = [Requirement(r) for r in project["optional-dependencies"]["gpu"]]
    assert canonicalize_name(gpu.name) == "vllm" and str(gpu.specifier).startswith("==")
    assert gpu.specifier.contains(lock["vllm"]), "the lock was made from this pin"
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if not _applies(requirement):
            continue
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} is a dependency of biocap and missing from the lock"
        assert requirement.specifier.contains(lock[name], prereleases=True), (
            f"biocap requires {requirement}; the lock has {name}=={lock[name]}"
        )


def test_the_image_installs_the_lock_and_resolves_nothing_else():
    dockerfile = (DOCKER / "Dockerfile.gpu-worker").read_text()
    assert "pip install -r gpu-worker.lock.txt" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    assert "-devel-" in dockerfile.split("FROM ", 1)[1].split()[0], "gcc and headers for Triton"
    assert "python3.11-dev" in dockerfile and "build-essential" in dockerfile


def _from_line(dockerfile: str) -> str:
    return next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM "))


def test_the_gpu_base_has_the_cuda_the_locked_torch_was_built_for():
    """Kernels compiled at run time (vLLM's JIT paths) use the base image's toolkit, and must
    match the CUDA libraries the locked torch loads (its nvidia-cuda-runtime wheel)."""
    base = _from_line((DOCKER / "Dockerfile.gpu-worker").read_text())
    image_cuda = base.split(":")[1].split("-")[0]  # nvidia/cuda:13.0.1-devel-ubuntu24.04
    runtime = _lock()["nvidia-cuda-runtime"]
    assert image_cuda.split(".")[:2] == runtime.split(".")[:2], (base, runtime)


def test_the_code_server_image_holds_to_the_same_lock():
    """The code server and run pods run the workers' versions of every shared package; its
    CPU torch is the lock's version (a local +cpu build satisfies the lock's ==)."""
    dockerfile = (DOCKER / "Dockerfile.user-code").read_text()
    assert "pip install -c gpu-worker.lock.txt ." in dockerfile
    lock = _lock()
    for name in ("torch", "torchvision"):
        assert f"{name}=={lock[name]}" in dockerfile, name
    pyproject = tomllib.loads(PYPROJECT.read_text())
    for line in pyproject["project"]["dependencies"]:
        requirement = Requirement(line)
        if _applies(requirement):
            name = canonicalize_name(requirement.name)
            assert name in lock, f"{name}: the code server's dependency is not in the lock"
            assert requirement.specifier.contains(lock[name], prereleases=True), name
