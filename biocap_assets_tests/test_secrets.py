"""Secrets never reach output, logs, metadata, tables or the run storage.

The end-to-end test sets dummy secrets in every form a deployment uses (a DuckLake catalog
with a password, URLs with credentials, the AWS and PostgreSQL variables), runs the real
``dagster`` CLI and ``biocap config`` with them, and then searches everything they wrote:
their output, the compute logs and run storage under ``DAGSTER_HOME``, the storage folder,
and every text column of the DuckDB tables.
"""

import base64
import io
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from biocap_assets.common.secrets import RedactingStream, redact, secret_values


@pytest.mark.parametrize(
    "text,secret",
    [
        ("postgres:host=db dbname=lake user=u password=hunter2", "hunter2"),
        ("postgres:host=db password = 'two words' user=u", "two words"),
        ('host=db password="q"', '"q"'),
        ('{"password": "json-secret"}', "json-secret"),
        ("postgresql://biocap:s3cret@db:5432/lake", "s3cret"),
        ("https://user:pw@wiki.example.org/w/api.php", ":pw@"),
        ("s3 token=abc123 region=x", "abc123"),
        ("api_key: sk-live-1234", "sk-live-1234"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI", "wJalrXUtnFEMI"),
    ],
)
def test_every_form_is_redacted(text, secret):
    assert secret not in redact(text, values=()) and "***" in redact(text, values=())


def test_secret_values_are_found_by_name_and_inside_our_variables():
    env = {
        "PGPASSWORD": "pg-password-1",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-2",
        "HF_TOKEN": "hf-token-3",
        "BIOCAP_DUCKLAKE_CATALOG": "postgres:host=db password=lake-pw-4",
        "BIOCAP_CATALOG_URL": "https://reader:url-pw-5@data.example.org/catalog.csv",
        "HOME": "/root",
        "AWS_REGION": "us-east-1",
    }
    values = secret_values(env)
    assert set(values) == {
        "pg-password-1",
        "aws-secret-2",
        "hf-token-3",
        "lake-pw-4",
        "url-pw-5",
    }
    # a value is removed wherever it appears, whatever surrounds it
    assert redact("connect failed: 'pg-password-1' rejected (hf-token-3)", values) == (
        "connect failed: '***' rejected (***)"
    )


def test_the_redacting_stream_finds_a_secret_split_across_writes():
    out = io.StringIO()
    stream = RedactingStream(out, values=["hunter2-long"])
    stream.write("user u, password hun")
    stream.write("ter2-long, end\nnext ")
    stream.write("line")
    stream.flush()
    assert out.getvalue() == "user u, password ***, end\nnext line"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def catalog_host(demo_world):
    import functools

    handler = functools.partial(_Quiet, directory=str(Path(demo_world.catalog).parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


SECRETS = {
    "catalog": "dummy-catalog-pw-71",
    "wiki": "dummy-wiki-pw-72",
    "lake": "dummy-lake-pw-73",
    "aws": "dummy-aws-secret-74",
    "pg": "dummy-pg-password-75",
}


def _cli(args: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def _text_columns(database: Path) -> list[str]:
    """Every string value of every table in a DuckDB file."""
    values = []
    with duckdb.connect(str(database), read_only=True) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
        for (table,) in tables:
            columns = connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "AND data_type LIKE '%VARCHAR%'",
                [table],
            ).fetchall()
            for (column,) in columns:
                values += [
                    str(v)
                    for (v,) in connection.execute(f'SELECT "{column}" FROM "{table}"').fetchall()
                ]
    return values


@pytest.mark.slow
def test_no_secret_reaches_output_logs_tables_or_run_storage(demo_world, catalog_host, tmp_path):
    from biocap_assets.demo.wiki_server import MediaWikiServer

    home, dagster_home = tmp_path / "biocap", tmp_path / "dagster"
    dagster_home.mkdir()
    catalog_name = Path(demo_world.catalog).name
    with MediaWikiServer.from_folder(demo_world.wiki_dir) as wiki:
        wiki_url = wiki.api_url.replace("http://", f"http://wikiuser:{SECRETS['wiki']}@")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BIOCAP_")},
            "BIOCAP_HOME": str(home),
            "DAGSTER_HOME": str(dagster_home),
            "BIOCAP_CATALOG_URL": (
                f"http://reader:{SECRETS['catalog']}@{catalog_host}/{catalog_name}"
            ),
            "BIOCAP_WIKI_API_URL": wiki_url,
            "AWS_SECRET_ACCESS_KEY": SECRETS["aws"],
            "AWS_ACCESS_KEY_ID": "dummy-key-id",
            "PGPASSWORD": SECRETS["pg"],
        }
        materialize = [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "biocap_assets.definitions",
            "--select",
        ]
        runs = [_cli([*materialize, "taxa_table,wiki_pages"], env)]
        assert runs[0].returncode == 0, runs[0].stderr[-3000:]
        lake = "postgres:host=127.0.0.1 port=9 dbname=lake user=biocap "
        broken = {**env, "BIOCAP_DUCKLAKE_CATALOG": lake + f"password={SECRETS['lake']}"}
        runs.append(_cli([*materialize, "taxa_table"], broken))
        assert runs[1].returncode != 0
        assert "cannot attach the DuckLake catalog" in runs[1].stdout + runs[1].stderr
        runs.append(_cli([sys.executable, "-m", "biocap_assets.cli", "config"], broken))
        assert runs[2].returncode == 0 and "password=***" in runs[2].stdout
        # the wiki's credentials went where they belong: HTTP basic auth, to that host
        basic = "Basic " + base64.b64encode(f"wikiuser:{SECRETS['wiki']}".encode()).decode()
        assert wiki.log and all(r.headers.get("Authorization") == basic for r in wiki.log)

    leaks = []
    for run in runs:
        for secret in SECRETS.values():
            if secret in run.stdout + run.stderr:
                leaks.append(f"{run.args[3:6]} printed {secret}")
    files = [p for folder in (home, dagster_home) for p in folder.rglob("*") if p.is_file()]
    assert any("compute_logs" in str(p) or p.suffix in (".out", ".err") for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in SECRETS.values():
            if secret.encode() in data:
                leaks.append(f"{path.relative_to(tmp_path)} holds {secret}")
    values = _text_columns(home / "biocap.duckdb")
    assert any("/wiki/" in v for v in values), "the wiki's page URLs are in the table"
    for secret in SECRETS.values():
        leaks += [f"a DuckDB table holds {v[:80]!r}" for v in values if secret in v]
    assert not leaks, "\n".join(leaks)
