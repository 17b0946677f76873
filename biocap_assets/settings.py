"""The platform's configuration: every environment variable, parsed in this one place.

Every variable is optional (see README "Configuration", which lists each of
``VARIABLES``; a test keeps the two in step). Where a data source is not set, the
synthetic demo world under ``$BIOCAP_HOME/demo`` stands in for it. A value that cannot be
used fails here, naming the variable and what it takes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from biocap_assets.common.secrets import is_secret_name, redact

WIKIPEDIA_API_URL = "https://en.wikipedia.org/w/api.php"
LAUNCHERS = ("local", "k8s")
# Where the k8s launcher mounts the shared volumes in worker pods (and values.yaml the
# evaluation volume in run pods): the model cache is HF_HOME there.
MODEL_CACHE_MOUNT = "/models"
EVAL_MOUNT = "/eval"
EXECUTORS = ("in_process", "multiprocess")


@dataclass(frozen=True)
class Variable:
    """A setting: its name, what it means and its default, in Markdown (the README's
    configuration table is made from these: ``readme_table``)."""

    name: str
    doc: str
    default: str


VARIABLES = (
    Variable(
        "BIOCAP_HOME",
        "local working folder",
        "`./.biocap`",
    ),
    Variable(
        "BIOCAP_STORAGE_URL",
        "object-storage root for every artifact (`file://...` or `s3://bucket/prefix`; S3 takes "
        "the usual `AWS_*` variables, and `AWS_ENDPOINT_URL` for an S3-compatible server)",
        "`file://$BIOCAP_HOME/storage`",
    ),
    Variable(
        "BIOCAP_DUCKDB_PATH",
        "the DuckDB file holding the tables",
        "`$BIOCAP_HOME/biocap.duckdb`",
    ),
    Variable(
        "BIOCAP_DUCKLAKE_CATALOG",
        "production: keep the tables in [DuckLake](https://ducklake.select) instead of the DuckDB "
        "file, so every run pod can write at once; a DuckLake catalog such as `postgres:host=db "
        "port=5432 dbname=biocap_lake user=biocap` (password from `PGPASSWORD`)",
        "unset: the DuckDB file",
    ),
    Variable(
        "BIOCAP_DUCKLAKE_DATA_PATH",
        "where DuckLake writes its Parquet files: a folder or `s3://` URL (S3 through DuckDB's "
        "httpfs with the `AWS_*` variables)",
        "`$BIOCAP_STORAGE_URL/lake/`",
    ),
    Variable(
        "BIOCAP_CATALOG_URL",
        "TreeOfLife-10M `catalog.csv`: a path, `file://`, `s3://` or `http(s)://` URL",
        "the demo world's catalog",
    ),
    Variable(
        "BIOCAP_SHARDS_URL",
        "input shards as a brace pattern, e.g. `/data/tol10m/shard-{000000..000159}.tar`",
        "the demo world's shards",
    ),
    Variable(
        "BIOCAP_VAL_SHARDS_URL",
        "validation shards as a brace pattern (BioCAP's `--val-data`), e.g. "
        "`/data/tol10m-val/shard-{000000..000031}.tar`: captioned like the training shards "
        "(partitions `val-000000`, ...) and used for the validation losses, so training gets "
        "every training shard",
        "the demo world's val shard; with `BIOCAP_SHARDS_URL` set and this unset, the last "
        "captioned training shard is held out instead (`val_shards`)",
    ),
    Variable(
        "BIOCAP_WIKI_API_URL",
        "MediaWiki Action API endpoint",
        "`https://en.wikipedia.org/w/api.php`; with the demo catalog, the demo's offline wiki "
        "served on 127.0.0.1",
    ),
    Variable(
        "BIOCAP_WIKI_CONTACT",
        "contact (email or URL) in the crawler's User-Agent, `biocap/<version> (+<project>; "
        "<contact>)`; required by the crawler for any API not on loopback (Wikimedia's User-Agent "
        "policy)",
        "none",
    ),
    Variable(
        "BIOCAP_LAUNCHER",
        "where workers run: `local` (subprocesses of the step) or `k8s` (one pod per worker run, "
        "GPU workers with `nvidia.com/gpu`)",
        "`local`",
    ),
    Variable(
        "BIOCAP_WORKER_IMAGE",
        "k8s launcher: the worker image (the `[gpu]` extra installed)",
        "none",
    ),
    Variable(
        "BIOCAP_K8S_NAMESPACE",
        "k8s launcher: namespace of the worker pods",
        "`biocap`",
    ),
    Variable(
        "BIOCAP_K8S_PENDING_TIMEOUT",
        "k8s launcher: seconds a worker pod may stay `Pending` (no node with a free GPU, image "
        "pull failing) before the step fails with the scheduler's or kubelet's reason",
        "`900`",
    ),
    Variable(
        "BIOCAP_K8S_KEEP_FAILED_PODS",
        "k8s launcher: `1` keeps failed worker pods (and training Jobs) for `kubectl "
        "describe/logs`",
        "`0` (deleted)",
    ),
    Variable(
        "BIOCAP_K8S_MODEL_CACHE",
        "k8s launcher: the ReadWriteMany PersistentVolumeClaim of the shared Hugging Face cache, "
        "mounted at `/models` (`HF_HUB_CACHE=/models/hub`) read-only with `HF_HUB_OFFLINE=1` in "
        "the pods that load models (their `HF_HOME` on scratch), read-write only in the pod of "
        "`model_weights`, which fills it; `none`: no shared cache (every pod downloads its model)",
        "`biocap-models`",
    ),
    Variable(
        "BIOCAP_K8S_EVAL_VOLUME",
        "k8s launcher: the ReadWriteMany PersistentVolumeClaim of the evaluation data, mounted at "
        "`/eval` in the `download` and `evaluate` worker pods (and, through `values.yaml`, in run "
        "pods); the three `BIOCAP_EVAL_*`/`BIOCAP_INQUIRE_RERANK` paths must lie under `/eval`; "
        "`none`: no volume",
        "`biocap-eval`",
    ),
    Variable(
        "BIOCAP_EVAL_DATA",
        "the upstream BioCAP `data/` folder (`classification_annotation/`, "
        "`retrieval_annotations/`, `inquire_annotations/`), used as is",
        "the demo's eval suite",
    ),
    Variable(
        "BIOCAP_EVAL_IMAGES",
        "root of the benchmark images (one folder per dataset)",
        "`$BIOCAP_EVAL_DATA/images`",
    ),
    Variable(
        "BIOCAP_INQUIRE_RERANK",
        "a local copy of the `evendrow/INQUIRE-Rerank` dataset as released: the folder "
        "`huggingface-cli download evendrow/INQUIRE-Rerank --repo-type dataset --local-dir <dir>` "
        "leaves (`data/test-*.parquet`), or a `datasets` cache. Without one, INQUIRE is reported "
        "as not evaluated and the `every_dataset_evaluated` check fails naming it",
        "`$BIOCAP_EVAL_DATA/inquire_rerank`, then the Hugging Face hub cache",
    ),
    Variable(
        "BIOCAP_EVAL_CRON",
        "cron of the `reevaluate_weekly` schedule",
        "`0 6 * * 1`",
    ),
    Variable(
        "BIOCAP_EXECUTOR",
        "how a run executes its steps: `in_process` (the run's own process; a shard partition is "
        "one step, so a step process of its own would only add start-up) or `multiprocess` (a "
        "process per step: the steps of one multi-asset run side by side)",
        "`in_process`",
    ),
    Variable(
        "BIOCAP_PARTITIONS_PER_RUN",
        "how many `captioned_shards` partitions one backfill run takes "
        "(`BackfillPolicy.multi_run`); above 1, a run captions its shards one after another and a "
        "failure fails (and retries) all of them",
        "`1`",
    ),
    Variable(
        "BIOCAP_DEMO",
        "`1`: the demo world stands in for unset data sources even in a production configuration "
        "(k8s launcher, object storage or DuckLake); unset there, an unset source fails its step "
        "naming the variable",
        "`0`",
    ),
    Variable(
        "DAGSTER_HOME",
        "Dagster instance folder used by `biocap demo` and `make dev`",
        "`$BIOCAP_HOME/dagster` (with biocap's `biocap_assets/dagster.yaml`)",
    ),
)
# Variables read where the library or protocol that defines them is used, not here: the
# Hugging Face caches (HF_HOME, HF_HUB_CACHE, HF_DATASETS_CACHE), torchrun's RANK,
# LOCAL_RANK and WORLD_SIZE, the AWS_* credential chain (passed whole to DuckDB's S3
# secret), and the API-key variable an inference config names. A test keeps that list exact.
ENV_VARS = {v.name: v.doc for v in VARIABLES}


# Read by the libraries that define them (boto3 and DuckDB's httpfs, libpq, the kubernetes
# client, huggingface_hub), listed by ``biocap config``.
THIRD_PARTY = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "PGPASSWORD",
    "KUBECONFIG",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
)


def readme_table() -> str:
    """The README's configuration table, made from ``VARIABLES`` (a test holds the README
    to it; ``biocap config --markdown`` prints it)."""
    rows = [f"| `{v.name}` | {v.doc} | {v.default} |" for v in VARIABLES]
    return "\n".join(["| variable | meaning | default |", "| --- | --- | --- |", *rows])


class ConfigurationError(ValueError):
    """A variable holds a value the platform cannot use; the message names it."""


def _flag(name: str, get, choices: str) -> bool:
    """A yes/no variable: 1, true or yes; 0, false, no or unset."""
    text = (get(name) or "0").lower()
    if text not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigurationError(f"{name}={text!r}: use {choices}")
    return text in ("1", "true", "yes")


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _claim(name: str, get, default: str) -> str:
    """A PersistentVolumeClaim's name, ``none`` for none (returned as "")."""
    text = get(name) or default
    if text.lower() == "none":
        return ""
    if not _DNS_LABEL.fullmatch(text) or len(text) > 63:
        raise ConfigurationError(
            f"{name}={text!r}: the name of a PersistentVolumeClaim in the workers' namespace "
            "(lower-case letters, digits and '-'), or none"
        )
    return text


@dataclass(frozen=True)
class Settings:
    home: Path
    storage_url: str
    duckdb_path: Path
    catalog_url: str | None
    shards_url: str | None
    val_shards_url: str | None
    wiki_api_url: str | None
    wiki_contact: str
    ducklake_catalog: str = ""
    ducklake_data_path: str = ""
    launcher: str = "local"
    worker_image: str = ""
    k8s_namespace: str = "biocap"
    k8s_pending_timeout: float = 900.0
    k8s_keep_failed_pods: bool = False
    k8s_model_cache: str = "biocap-models"  # "" when none
    k8s_eval_volume: str = "biocap-eval"  # "" when none
    eval_data: str = ""
    eval_images: str = ""
    inquire_rerank: str = ""
    eval_cron: str = "0 6 * * 1"
    dagster_home: Path | None = None
    executor: str = "in_process"
    partitions_per_run: int = 1
    demo: bool = False  # BIOCAP_DEMO: the demo world asked for outside a laptop
    # the variables that were set (the Definitions pass those as dg.EnvVar, so the UI
    # shows where a value came from)
    set_variables: frozenset[str] = field(default_factory=frozenset)

    @property
    def demo_root(self) -> Path:
        return self.home / "demo"

    @property
    def production_shaped(self) -> str:
        """Why this is not a laptop's configuration ("" when it is one)."""
        reasons = [
            *(["BIOCAP_LAUNCHER=k8s"] if self.launcher == "k8s" else []),
            *([] if self.storage_url.startswith("file:") else ["object storage"]),
            *(["DuckLake"] if self.ducklake_catalog else []),
        ]
        return ", ".join(reasons)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        home = Path(get("BIOCAP_HOME") or ".biocap").expanduser().resolve()
        storage = (get("BIOCAP_STORAGE_URL") or (home / "storage").as_uri()).rstrip("/")
        duckdb_path = Path(get("BIOCAP_DUCKDB_PATH") or home / "biocap.duckdb").expanduser()
        launcher = get("BIOCAP_LAUNCHER") or "local"
        if launcher not in LAUNCHERS:
            raise ConfigurationError(
                f"BIOCAP_LAUNCHER={launcher!r}: use one of {', '.join(LAUNCHERS)}"
            )
        timeout_text = get("BIOCAP_K8S_PENDING_TIMEOUT") or "900"
        try:
            pending_timeout = float(timeout_text)
        except ValueError:
            raise ConfigurationError(
                f"BIOCAP_K8S_PENDING_TIMEOUT={timeout_text!r}: a number of seconds, e.g. 900 "
                "(not a duration such as 15m)"
            ) from None
        if pending_timeout <= 0:
            raise ConfigurationError(
                f"BIOCAP_K8S_PENDING_TIMEOUT={timeout_text!r}: must be above 0 seconds"
            )
        keep_failed_pods = _flag("BIOCAP_K8S_KEEP_FAILED_PODS", get, "1 (keep) or 0 (delete)")
        dagster_home = get("DAGSTER_HOME")
        executor = get("BIOCAP_EXECUTOR") or "in_process"
        if executor not in EXECUTORS:
            raise ConfigurationError(
                f"BIOCAP_EXECUTOR={executor!r}: use one of {', '.join(EXECUTORS)}"
            )
        per_run_text = get("BIOCAP_PARTITIONS_PER_RUN") or "1"
        if not per_run_text.isdigit() or int(per_run_text) < 1:
            raise ConfigurationError(
                f"BIOCAP_PARTITIONS_PER_RUN={per_run_text!r}: a whole number of partitions, 1 "
                "or more"
            )
        return cls(
            demo=_flag("BIOCAP_DEMO", get, "1 (allow) or 0"),
            home=home,
            storage_url=storage,
            duckdb_path=duckdb_path.resolve(),
            catalog_url=get("BIOCAP_CATALOG_URL"),
            shards_url=get("BIOCAP_SHARDS_URL"),
            val_shards_url=get("BIOCAP_VAL_SHARDS_URL"),
            wiki_api_url=get("BIOCAP_WIKI_API_URL"),
            wiki_contact=get("BIOCAP_WIKI_CONTACT") or "",
            ducklake_catalog=get("BIOCAP_DUCKLAKE_CATALOG") or "",
            ducklake_data_path=get("BIOCAP_DUCKLAKE_DATA_PATH") or f"{storage}/lake/",
            launcher=launcher,
            worker_image=get("BIOCAP_WORKER_IMAGE") or "",
            k8s_namespace=get("BIOCAP_K8S_NAMESPACE") or "biocap",
            k8s_pending_timeout=pending_timeout,
            k8s_keep_failed_pods=keep_failed_pods,
            k8s_model_cache=_claim("BIOCAP_K8S_MODEL_CACHE", get, "biocap-models"),
            k8s_eval_volume=_claim("BIOCAP_K8S_EVAL_VOLUME", get, "biocap-eval"),
            eval_data=get("BIOCAP_EVAL_DATA") or "",
            eval_images=get("BIOCAP_EVAL_IMAGES") or "",
            inquire_rerank=get("BIOCAP_INQUIRE_RERANK") or "",
            eval_cron=get("BIOCAP_EVAL_CRON") or "0 6 * * 1",
            dagster_home=Path(dagster_home).expanduser() if dagster_home else None,
            executor=executor,
            partitions_per_run=int(per_run_text),
            set_variables=frozenset(v.name for v in VARIABLES if get(v.name)),
        )

    def effective(self) -> dict[str, str]:
        """The value in effect for each variable, defaults resolved ("" where none)."""
        return {
            "BIOCAP_HOME": str(self.home),
            "BIOCAP_STORAGE_URL": self.storage_url,
            "BIOCAP_DUCKDB_PATH": str(self.duckdb_path),
            "BIOCAP_DUCKLAKE_CATALOG": self.ducklake_catalog,
            "BIOCAP_DUCKLAKE_DATA_PATH": self.ducklake_data_path if self.ducklake_catalog else "",
            "BIOCAP_CATALOG_URL": self.catalog_url or "demo world",
            "BIOCAP_SHARDS_URL": self.shards_url or "demo world",
            "BIOCAP_VAL_SHARDS_URL": self.val_shards_url
            or ("none: the last training shard is held out" if self.shards_url else "demo world"),
            "BIOCAP_WIKI_API_URL": self.wiki_api_url
            or (WIKIPEDIA_API_URL if self.catalog_url else "demo's offline wiki"),
            "BIOCAP_WIKI_CONTACT": self.wiki_contact,
            "BIOCAP_LAUNCHER": self.launcher,
            "BIOCAP_WORKER_IMAGE": self.worker_image,
            "BIOCAP_K8S_NAMESPACE": self.k8s_namespace,
            "BIOCAP_K8S_PENDING_TIMEOUT": f"{self.k8s_pending_timeout:g}",
            "BIOCAP_K8S_KEEP_FAILED_PODS": "1" if self.k8s_keep_failed_pods else "0",
            "BIOCAP_K8S_MODEL_CACHE": self.k8s_model_cache or "none",
            "BIOCAP_K8S_EVAL_VOLUME": self.k8s_eval_volume or "none",
            "BIOCAP_EVAL_DATA": self.eval_data or "demo suite",
            "BIOCAP_EVAL_IMAGES": self.eval_images
            or (f"{self.eval_data}/images" if self.eval_data else "demo images"),
            "BIOCAP_INQUIRE_RERANK": self.inquire_rerank,
            "BIOCAP_EVAL_CRON": self.eval_cron,
            "BIOCAP_EXECUTOR": self.executor,
            "BIOCAP_PARTITIONS_PER_RUN": str(self.partitions_per_run),
            "BIOCAP_DEMO": "1" if self.demo else "0",
            "DAGSTER_HOME": str(self.dagster_home or self.home / "dagster"),
        }

    def describe(self) -> list[tuple[str, str, bool, str]]:
        """(variable, value in effect, whether it was set, doc) for every variable, secrets
        redacted (``biocap config``)."""
        values = self.effective()
        return [
            (v.name, redact(values[v.name]), v.name in self.set_variables, v.doc) for v in VARIABLES
        ]

    def inconsistencies(self) -> list[str]:
        """Settings that are valid one by one but do not go together."""
        found = []
        ignored = [
            ("BIOCAP_DUCKLAKE_DATA_PATH", not self.ducklake_catalog, "no BIOCAP_DUCKLAKE_CATALOG"),
            ("BIOCAP_DUCKDB_PATH", bool(self.ducklake_catalog), "BIOCAP_DUCKLAKE_CATALOG is set"),
            ("BIOCAP_EVAL_IMAGES", not self.eval_data, "no BIOCAP_EVAL_DATA"),
            *(
                (name, self.launcher != "k8s", "the launcher is local")
                for name in (
                    "BIOCAP_WORKER_IMAGE",
                    "BIOCAP_K8S_NAMESPACE",
                    "BIOCAP_K8S_PENDING_TIMEOUT",
                    "BIOCAP_K8S_KEEP_FAILED_PODS",
                    "BIOCAP_K8S_MODEL_CACHE",
                    "BIOCAP_K8S_EVAL_VOLUME",
                )
            ),
        ]
        for name, unused, why in ignored:
            if name in self.set_variables and unused:
                found.append(f"{name} is set but not used: {why}")
        if self.launcher == "k8s" and self.storage_url.startswith("file:"):
            found.append(
                "BIOCAP_LAUNCHER=k8s with a file:// BIOCAP_STORAGE_URL: worker pods cannot "
                "see this machine's files; use s3://"
            )
        if self.launcher == "k8s" and self.k8s_eval_volume:
            for name, value in (
                ("BIOCAP_EVAL_DATA", self.eval_data),
                ("BIOCAP_EVAL_IMAGES", self.eval_images),
                ("BIOCAP_INQUIRE_RERANK", self.inquire_rerank),
            ):
                if value and not value.startswith(EVAL_MOUNT + "/"):
                    found.append(
                        f"{name}={value} is not on the evaluation volume "
                        f"({self.k8s_eval_volume} at {EVAL_MOUNT}): the evaluation worker "
                        "pods would not find it"
                    )
        if self.val_shards_url and not self.shards_url:
            found.append(
                "BIOCAP_VAL_SHARDS_URL is set but BIOCAP_SHARDS_URL is not: real validation "
                "shards would meet the demo world's training shards"
            )
        if bool(self.catalog_url) != bool(self.shards_url):
            real, demo = (
                ("BIOCAP_CATALOG_URL", "BIOCAP_SHARDS_URL")
                if self.catalog_url
                else ("BIOCAP_SHARDS_URL", "BIOCAP_CATALOG_URL")
            )
            found.append(f"{real} is set but {demo} is not: real data would meet the demo world's")
        if self.production_shaped and not self.demo:
            for name, value in (
                ("BIOCAP_CATALOG_URL", self.catalog_url),
                ("BIOCAP_SHARDS_URL", self.shards_url),
                ("BIOCAP_EVAL_DATA", self.eval_data),
            ):
                if not value:
                    found.append(
                        f"{name} is unset in a production configuration "
                        f"({self.production_shaped}): the steps that read it will fail; set it, "
                        "or BIOCAP_DEMO=1 to use the demo world on purpose"
                    )
        return found

    @staticmethod
    def third_party(env: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
        """The other libraries' variables a deployment sets for us (the AWS credential chain,
        libpq's password, the kube config, Hugging Face's caches), as ``biocap config``
        shows them: secrets only as set or not."""
        env = os.environ if env is None else env
        shown = []
        for name in THIRD_PARTY:
            value = env.get(name, "")
            if is_secret_name(name):
                value = "(set, hidden)" if value else ""
            shown.append((name, value or "(unset)"))
        return shown
