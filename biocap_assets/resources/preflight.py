"""`biocap check`: what a long job needs, checked before it starts.

Each check answers with ``Problem``s that name the variable, what is wrong and what to do.
`biocap check` runs them all; the storage resource runs ``storage_problems`` when a run
first uses it, so no table or artifact is written before storage is known to be writable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import fsspec
from upath import UPath

from biocap_assets.common.files import is_local
from biocap_assets.common.secrets import redact
from biocap_assets.scraping.settings import require_contact
from biocap_assets.settings import WIKIPEDIA_API_URL, ConfigurationError, Settings
from biocap_assets.shards.naming import shard_partitions

NOT_ON_A_LAPTOP = (
    "not set, and this configuration is not a laptop's: the synthetic demo world would stand in"
)


@dataclass(frozen=True)
class Problem:
    variable: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.variable}: {self.what}. {self.fix}"


@dataclass(frozen=True)
class Check:
    name: str
    problems: tuple[Problem, ...]
    detail: str = ""


def _caused_by(exc: BaseException, name: str) -> bool:
    while exc is not None:
        if type(exc).__name__ == name:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _unreachable(variable: str, url: str, exc: Exception, doing: str, fix: str) -> Problem:
    """Why ``url`` could not be used: S3 without credentials, or the error as it came."""
    if _caused_by(exc, "NoCredentialsError"):
        return Problem(
            variable,
            f"{redact(url)} needs S3 credentials and none were found",
            "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run with a "
            "role); AWS_ENDPOINT_URL for an S3-compatible server",
        )
    return Problem(
        variable, f"cannot {doing} {redact(url)}: {type(exc).__name__}: {redact(str(exc))}", fix
    )


def storage_problems(storage_url: str) -> list[Problem]:
    """Write, read back and delete a probe file under the storage root."""
    root = UPath(storage_url)
    probe = root / f".biocap-check-{uuid.uuid4().hex}"
    try:
        if is_local(storage_url):
            # a local root is made on first use; on S3 mkdir could create a bucket (or need
            # the right to), and object writes need no folder
            root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"biocap check\n")
        if probe.read_bytes() != b"biocap check\n":
            raise OSError("what was read back is not what was written")
        probe.unlink()
    except Exception as exc:
        fix = "Check that the folder or bucket exists and that this user may write there"
        return [_unreachable("BIOCAP_STORAGE_URL", storage_url, exc, "write under", fix)]
    return []


def lake_problems(settings: Settings) -> list[Problem]:
    from biocap_assets.resources.duckdb import attach_lake

    try:
        attach_lake(settings.ducklake_catalog, settings.ducklake_data_path).close()
    except Exception as exc:
        return [
            Problem(
                "BIOCAP_DUCKLAKE_CATALOG",
                redact(str(exc)),
                "Check the catalog's host, database and user (password in PGPASSWORD), and "
                "BIOCAP_DUCKLAKE_DATA_PATH",
            )
        ]
    return []


def k8s_problems(settings: Settings) -> list[Problem]:
    """The k8s launcher's needs: the worker image, a kube config, an API server that
    answers, and the shared volumes' claims in the workers' namespace."""
    image = settings.worker_image
    problems = []
    if not image:
        problems.append(
            Problem(
                "BIOCAP_WORKER_IMAGE",
                "the k8s launcher needs the GPU worker image and none is set",
                "Set it to the image built from deploy/ (see deploy/README.md)",
            )
        )
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except Exception as exc:
            problems.append(
                Problem(
                    "BIOCAP_LAUNCHER",
                    f"k8s: not inside a cluster and no usable kube config ({exc})",
                    "Run in the cluster, or point KUBECONFIG at a config for it",
                )
            )
            return problems
    try:  # one cheap call: is the API server there, and does it take our credentials?
        client.VersionApi().get_code(_request_timeout=10)
    except Exception as exc:
        host = client.Configuration.get_default_copy().host
        problems.append(
            Problem(
                "BIOCAP_LAUNCHER",
                f"k8s: the API server {host} did not answer ({type(exc).__name__}: "
                f"{redact(str(exc))[:200]})",
                "Check the cluster is up and the kube config's server and credentials",
            )
        )
        return problems
    for variable, claim in (
        ("BIOCAP_K8S_MODEL_CACHE", settings.k8s_model_cache),
        ("BIOCAP_K8S_EVAL_VOLUME", settings.k8s_eval_volume),
    ):
        if claim:
            problems += _claim_problems(client, variable, claim, settings.k8s_namespace)
    return problems


def _claim_problems(client, variable: str, claim: str, namespace: str) -> list[Problem]:
    """A shared volume's claim must exist, be ReadWriteMany (pods on many nodes mount it)
    and be bound; otherwise every pod mounting it waits Pending until the timeout."""
    where = f"PersistentVolumeClaim {namespace}/{claim}"
    try:
        pvc = client.CoreV1Api().read_namespaced_persistent_volume_claim(
            claim, namespace, _request_timeout=10
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return [
                Problem(
                    variable,
                    f"k8s: there is no {where}",
                    "Apply deploy/k8s/volumes.yaml, or set the variable to the claim's "
                    "name (none: no shared volume)",
                )
            ]
        return [
            Problem(
                variable,
                f"k8s: cannot read {where} ({exc.status} {exc.reason})",
                "Grant get on persistentvolumeclaims (deploy/k8s/rbac.yaml does)",
            )
        ]
    problems = []
    modes = pvc.spec.access_modes or []
    if "ReadWriteMany" not in modes:
        problems.append(
            Problem(
                variable,
                f"k8s: {where} is {', '.join(modes) or 'without access modes'}, not "
                "ReadWriteMany: worker pods on different nodes cannot mount it at once",
                "Recreate it with accessModes [ReadWriteMany] from a storage class that "
                "offers it (NFS, CephFS, EFS...)",
            )
        )
    phase = pvc.status.phase if pvc.status else None
    if phase != "Bound":
        problems.append(
            Problem(
                variable,
                f"k8s: {where} is {phase or 'not bound'}: no volume was provisioned for it",
                "Check its storage class (kubectl describe pvc)",
            )
        )
    return problems


def _missing(variable: str, url: str, what: str) -> Problem | None:
    """None when ``url`` is there; else why not, as a problem of ``variable``."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
        if fs.exists(path):
            return None
        return Problem(variable, f"{redact(url)} is not there", f"Point it at {what}")
    except Exception as exc:
        fix = f"Check the address and the permissions; it should be {what}"
        return _unreachable(variable, url, exc, "look at", fix)


def _unset(variable: str, what: str, production: bool, default: str) -> Check:
    """A source left unset: the demo world stands in on a laptop, and is a problem beyond."""
    if production:
        return Check(variable, (Problem(variable, NOT_ON_A_LAPTOP, f"Set it to {what}"),))
    return Check(variable, (), f"unset: {default}")


def _shard_check(variable: str, pattern: str, what: str) -> Check:
    """The pattern expands, and its first and last shards are there."""
    try:
        shards = list(shard_partitions(pattern).values())
    except ValueError as exc:
        fix = "Use a brace pattern such as /data/shard-{000000..000159}.tar"
        return Check(variable, (Problem(variable, str(exc), fix),))
    found = [_missing(variable, u, what) for u in dict.fromkeys((shards[0], shards[-1]))]
    return Check(variable, tuple(p for p in found if p), f"{len(shards)} shards")


def source_problems(settings: Settings) -> list[Check]:
    """Catalog, shards, evaluation data and the wiki contact."""
    production = bool(settings.production_shaped) and not settings.demo
    checks = []
    demo = "the demo world stands in"
    for variable, value, what in (
        ("BIOCAP_CATALOG_URL", settings.catalog_url, "TreeOfLife-10M's catalog.csv"),
        ("BIOCAP_EVAL_DATA", settings.eval_data, "the upstream BioCAP data/ folder"),
    ):
        if value:
            problem = _missing(variable, value, what)
            checks.append(Check(variable, (problem,) if problem else (), redact(value)))
        else:
            checks.append(_unset(variable, what, production, demo))
    if settings.eval_images:
        problem = _missing("BIOCAP_EVAL_IMAGES", settings.eval_images, "the benchmark images")
        checks.append(
            Check("BIOCAP_EVAL_IMAGES", (problem,) if problem else (), settings.eval_images)
        )
    else:  # never a problem of its own: it follows BIOCAP_EVAL_DATA
        default = f"{settings.eval_data}/images" if settings.eval_data else demo
        checks.append(Check("BIOCAP_EVAL_IMAGES", (), f"unset: {default}"))
    for variable, pattern, what in (
        ("BIOCAP_SHARDS_URL", settings.shards_url, "the input tars"),
        ("BIOCAP_VAL_SHARDS_URL", settings.val_shards_url, "the validation tars"),
    ):
        if pattern:
            checks.append(_shard_check(variable, pattern, what))
    if not settings.shards_url:
        checks.append(
            _unset("BIOCAP_SHARDS_URL", "the input tars' brace pattern", production, demo)
        )
    api = settings.wiki_api_url or (WIKIPEDIA_API_URL if settings.catalog_url else "")
    if api:
        try:
            require_contact(api, settings.wiki_contact)
            checks.append(Check("BIOCAP_WIKI_CONTACT", (), settings.wiki_contact or "loopback API"))
        except ValueError:
            problem = Problem(
                "BIOCAP_WIKI_CONTACT",
                f"crawling {api} needs a contact for the User-Agent (Wikimedia's policy)",
                "Set it to an email or URL where you can be reached",
            )
            checks.append(Check("BIOCAP_WIKI_CONTACT", (problem,)))
    else:
        checks.append(Check("BIOCAP_WIKI_CONTACT", (), "the demo's offline wiki needs none"))
    return checks


def run_all(env=None) -> list[Check]:
    """Every check, in the order a job meets them."""
    try:
        settings = Settings.from_env(env)
    except ConfigurationError as exc:
        variable = str(exc).split("=", 1)[0]
        return [Check("values", (Problem(variable, str(exc).split(": ", 1)[-1], "Fix the value"),))]
    checks = [Check("values", (), "every variable parses")]
    checks.append(
        Check(
            "storage", tuple(storage_problems(settings.storage_url)), redact(settings.storage_url)
        )
    )
    if settings.ducklake_catalog:
        checks.append(
            Check("DuckLake", tuple(lake_problems(settings)), redact(settings.ducklake_catalog))
        )
    if settings.launcher == "k8s":
        checks.append(Check("k8s", tuple(k8s_problems(settings)), settings.worker_image))
    return checks + source_problems(settings)
