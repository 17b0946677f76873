"""The `biocap` command line as a user meets it: `biocap dev` on a busy port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

BIOCAP = str(Path(sys.executable).with_name("biocap"))


def test_dev_on_a_busy_port_fails_at_once_and_names_another(biocap_home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [BIOCAP, "dev", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2
    assert time.monotonic() - started < 30, "fails before starting anything"
    assert f"127.0.0.1:{port} is not free" in done.stderr
    assert f"make dev PORT={port + 1}" in done.stderr
    assert not (biocap_home / "dagster" / "biocap-workspace.yaml").exists(), "nothing set up"


def _check(env_changes: dict[str, str], home) -> tuple[int, str]:
    import os

    env = {**os.environ, "BIOCAP_HOME": str(home), **env_changes}
    done = subprocess.run([BIOCAP, "check"], env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_check_passes_on_the_laptop_defaults(biocap_home):
    code, printed = _check({}, biocap_home)
    assert code == 0, printed
    assert "ready: every check passed" in printed
    assert "unset: the demo world stands in" in printed


def test_check_names_each_variable_and_what_to_do(biocap_home, tmp_path):
    # a value that does not parse: nothing else is checked
    code, printed = _check({"BIOCAP_K8S_PENDING_TIMEOUT": "15m"}, biocap_home)
    assert code == 1
    assert "PROBLEM BIOCAP_K8S_PENDING_TIMEOUT" in printed and "not a duration" in printed

    # missing data, and a live Wikipedia crawl without a contact
    code, printed = _check(
        {
            "BIOCAP_CATALOG_URL": str(tmp_path / "nope.csv"),
            "BIOCAP_SHARDS_URL": str(tmp_path / "shard-{000000..000002}.tar"),
            "BIOCAP_VAL_SHARDS_URL": str(tmp_path / "val" / "shard-{000000..000001}.tar"),
            "BIOCAP_EVAL_DATA": str(tmp_path / "data"),
        },
        biocap_home,
    )
    assert code == 1
    for expected in (
        f"PROBLEM BIOCAP_CATALOG_URL: {tmp_path / 'nope.csv'} is not there",
        f"PROBLEM BIOCAP_SHARDS_URL: {tmp_path / 'shard-000000.tar'} is not there",
        f"PROBLEM BIOCAP_VAL_SHARDS_URL: {tmp_path / 'val' / 'shard-000000.tar'} is not there",
        f"PROBLEM BIOCAP_EVAL_DATA: {tmp_path / 'data'} is not there",
        "PROBLEM BIOCAP_WIKI_CONTACT: crawling https://en.wikipedia.org/w/api.php",
    ):
        assert expected in printed, printed

    # the k8s launcher: its image, and a cluster to talk to
    code, printed = _check(
        {"BIOCAP_LAUNCHER": "k8s", "KUBECONFIG": str(tmp_path / "no-kubeconfig")}, biocap_home
    )
    assert code == 1
    assert "PROBLEM BIOCAP_WORKER_IMAGE" in printed
    assert "PROBLEM BIOCAP_LAUNCHER: k8s: not inside a cluster" in printed
    assert "KUBECONFIG" in printed
    # production-shaped: a source left unset is a problem, not a silent demo
    assert "PROBLEM BIOCAP_CATALOG_URL: not set" in printed


def test_check_names_storage_that_cannot_be_written(biocap_home, tmp_path):
    """Storage that is there but not writable (here a path through a regular file, which
    even root cannot make a folder of): named before any run writes a table."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, printed = _check({"BIOCAP_STORAGE_URL": (blocker / "storage").as_uri()}, biocap_home)
    assert code == 1
    assert "PROBLEM BIOCAP_STORAGE_URL" in printed and "may write there" in printed, printed


def test_check_reports_an_unreachable_ducklake_catalog(biocap_home):
    from biocap_assets_tests.ports import free_port

    catalog = f"postgres:host=127.0.0.1 port={free_port()} dbname=lake user=nobody"
    code, printed = _check({"BIOCAP_DUCKLAKE_CATALOG": catalog}, biocap_home)
    assert code == 1
    assert "PROBLEM BIOCAP_DUCKLAKE_CATALOG: cannot attach the DuckLake catalog" in printed


def test_check_says_when_the_clusters_api_server_does_not_answer(biocap_home, tmp_path):
    from biocap_assets_tests.k8s_api_server import kubeconfig as kubeconfig_text
    from biocap_assets_tests.ports import free_port

    server = f"https://127.0.0.1:{free_port()}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig_text(server))
    code, printed = _check(
        {
            "BIOCAP_LAUNCHER": "k8s",
            "BIOCAP_WORKER_IMAGE": "registry/worker:1",
            "KUBECONFIG": str(kubeconfig),
        },
        biocap_home,
    )
    assert code == 1
    assert f"PROBLEM BIOCAP_LAUNCHER: k8s: the API server {server} did not answer" in printed
    assert "PROBLEM BIOCAP_WORKER_IMAGE" not in printed


def test_check_names_a_missing_or_unsuitable_shared_volume(biocap_home, tmp_path):
    """The claims are read through the kubernetes client, from an API-shaped server: a
    missing claim, and one that is ReadWriteOnce and unbound, are each named with their
    variable; a good one is not."""
    from biocap_assets_tests.k8s_api_server import KubeApiServer, claim

    env = {"BIOCAP_LAUNCHER": "k8s", "BIOCAP_WORKER_IMAGE": "registry/worker:1"}
    with KubeApiServer([claim("biocap-models", "biocap", ["ReadWriteOnce"], "Pending")]) as api:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(api.kubeconfig())
        code, printed = _check({**env, "KUBECONFIG": str(kubeconfig)}, biocap_home)
    assert code == 1
    assert "PROBLEM BIOCAP_K8S_EVAL_VOLUME: k8s: there is no PersistentVolumeClaim " in printed
    assert "biocap/biocap-eval" in printed
    assert "PROBLEM BIOCAP_K8S_MODEL_CACHE: k8s: PersistentVolumeClaim biocap/biocap-models " in (
        printed
    )
    assert "ReadWriteOnce, not ReadWriteMany" in printed and "is Pending" in printed

    good = [
        claim("biocap-models", "biocap", ["ReadWriteMany"]),
        claim("biocap-eval", "biocap", ["ReadWriteMany"]),
    ]
    with KubeApiServer(good) as api:
        kubeconfig.write_text(api.kubeconfig())
        code, printed = _check({**env, "KUBECONFIG": str(kubeconfig)}, biocap_home)
    assert "BIOCAP_K8S_MODEL_CACHE" not in printed and "BIOCAP_K8S_EVAL_VOLUME" not in printed
    assert "PROBLEM BIOCAP_LAUNCHER" not in printed
