"""Environment settings of the platform, resolved once with their documented defaults.

Every variable is optional (see README "Configuration"). Where a data source is
not set, the synthetic demo world under ``$BIOCAP_HOME/demo`` stands in for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WIKIPEDIA_API_URL = "https://en.wikipedia.org/w/api.php"

ENV_VARS = {
    "BIOCAP_HOME": "local working folder (default ./.biocap)",
    "BIOCAP_STORAGE_URL": "object-storage root (default file://$BIOCAP_HOME/storage)",
    "BIOCAP_DUCKDB_PATH": "DuckDB file (default $BIOCAP_HOME/biocap.duckdb)",
    "BIOCAP_CATALOG_URL": "TreeOfLife-10M catalog.csv, path or URL (default: demo world)",
    "BIOCAP_SHARDS_URL": "input shards as a brace pattern (default: demo world)",
    "BIOCAP_WIKI_API_URL": "MediaWiki Action API endpoint (default: English Wikipedia, "
    "or the demo's offline wiki when the catalog is the demo's)",
    "BIOCAP_LAUNCHER": "where workers run: local (subprocesses, default) or k8s (pods)",
    "BIOCAP_WORKER_IMAGE": "k8s launcher: the GPU worker image",
    "BIOCAP_K8S_NAMESPACE": "k8s launcher: namespace of worker pods (default biocap)",
    "BIOCAP_EVAL_DATA": "the upstream BioCAP data/eval folder (default: the demo's suite)",
    "BIOCAP_EVAL_IMAGES": "root of the benchmark images (default: $BIOCAP_EVAL_DATA/images)",
    "BIOCAP_INQUIRE_RERANK": "a local copy of the evendrow/INQUIRE-Rerank dataset (a folder "
    "from `huggingface-cli download`, or a datasets cache); default: "
    "$BIOCAP_EVAL_DATA/inquire_rerank, then the Hugging Face hub cache",
    "BIOCAP_EVAL_CRON": "cron of the re-evaluation schedule (default 0 6 * * 1, weekly)",
    "BIOCAP_WIKI_CONTACT": "contact (email or URL) put in the crawler's User-Agent; "
    "required for a non-loopback API",
    "BIOCAP_DUCKLAKE_CATALOG": "production catalog many runs can write: a DuckLake catalog, "
    "e.g. 'postgres:host=db dbname=biocap_lake user=biocap' (password from PGPASSWORD); "
    "unset: the DuckDB file",
    "BIOCAP_DUCKLAKE_DATA_PATH": "where DuckLake writes its Parquet files "
    "(default $BIOCAP_STORAGE_URL/lake/)",
    "BIOCAP_K8S_PENDING_TIMEOUT": "k8s launcher: seconds a worker pod may stay Pending "
    "(no GPU node, image pull) before the step fails with the reason (default 900)",
    "BIOCAP_K8S_KEEP_FAILED_PODS": "k8s launcher: 1 keeps failed worker pods for inspection",
}


@dataclass(frozen=True)
class Settings:
    home: Path
    storage_url: str
    duckdb_path: Path
    catalog_url: str | None
    shards_url: str | None
    wiki_api_url: str | None
    wiki_contact: str
    ducklake_catalog: str = ""
    ducklake_data_path: str = ""

    @property
    def demo_root(self) -> Path:
        return self.home / "demo"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        home = Path(get("BIOCAP_HOME") or ".biocap").expanduser().resolve()
        storage = get("BIOCAP_STORAGE_URL") or (home / "storage").as_uri()
        duckdb_path = Path(get("BIOCAP_DUCKDB_PATH") or home / "biocap.duckdb").expanduser()
        return cls(
            home=home,
            storage_url=storage.rstrip("/"),
            duckdb_path=duckdb_path.resolve(),
            catalog_url=get("BIOCAP_CATALOG_URL"),
            shards_url=get("BIOCAP_SHARDS_URL"),
            wiki_api_url=get("BIOCAP_WIKI_API_URL"),
            wiki_contact=get("BIOCAP_WIKI_CONTACT") or "",
            ducklake_catalog=get("BIOCAP_DUCKLAKE_CATALOG") or "",
            ducklake_data_path=get("BIOCAP_DUCKLAKE_DATA_PATH") or f"{storage.rstrip('/')}/lake/",
        )
