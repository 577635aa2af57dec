"""The production instance config (`dagster_home/dagster.postgres.yaml`) against a real PostgreSQL
server on loopback: a run and its materialization land in PostgreSQL tables, not sqlite files."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.harness.http_server import FaultyFileServer
from tests.harness.shards import build_shard

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


@pytest.fixture
def postgres_database(postgres_url):
    """A fresh database on the test server, dropped afterwards; yields the DAGSTER_PG_* variables."""
    import psycopg2  # from dagster-postgres (psycopg2-binary)

    parts = urlsplit(postgres_url)
    name = f"dagster_test_{secrets.token_hex(4)}"
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "DAGSTER_PG_HOST": parts.hostname,
            "DAGSTER_PG_PORT": str(parts.port or 5432),
            "DAGSTER_PG_USER": unquote(parts.username or ""),
            "DAGSTER_PG_PASSWORD": unquote(parts.password or ""),
            "DAGSTER_PG_DB": name,
        }
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_postgres_instance_records_runs_and_materializations(postgres_database, tmp_path):
    import psycopg2

    assert postgres_database["DAGSTER_PG_HOST"] == "127.0.0.1"
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.postgres.yaml", home / "dagster.yaml")
    served = tmp_path / "served"
    spec = build_shard(served, "part_0", n_clips=1, with_defects=False)
    with FaultyFileServer(served) as server:
        manifest = tmp_path / "manifest.txt"
        manifest.write_text(server.url(spec.archive_path.name) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KINETICS_", "DAGSTER_"))}
        env.update(
            postgres_database,
            DAGSTER_HOME=str(home),
            KINETICS_MANIFEST=str(manifest),
            KINETICS_DATA_ROOT=str(tmp_path / "data"),
        )
        script = textwrap.dedent(
            """
            import dagster as dg
            from kinetics_assets import definitions
            defs = definitions.defs()
            raw_archives = next(a for a in defs.assets if a.key.to_user_string() == "raw_archives")
            instance = dg.DagsterInstance.get()
            print("STORAGE", type(instance.run_storage).__name__, type(instance.event_log_storage).__name__,
                  type(instance.schedule_storage).__name__)
            result = dg.materialize([raw_archives], partition_key="part_0", instance=instance,
                                    resources={"storage": defs.resources["storage"]})
            assert result.success
            print("RUN", result.run_id)
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env=env, check=False, capture_output=True, text=True, timeout=300
        )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "STORAGE PostgresRunStorage PostgresEventLogStorage PostgresScheduleStorage" in proc.stdout
    run_id = proc.stdout.split("RUN ", 1)[1].split()[0]

    # Straight from PostgreSQL, not through Dagster.
    db = postgres_database
    with (
        psycopg2.connect(
            host=db["DAGSTER_PG_HOST"],
            port=db["DAGSTER_PG_PORT"],
            user=db["DAGSTER_PG_USER"],
            password=db["DAGSTER_PG_PASSWORD"],
            dbname=db["DAGSTER_PG_DB"],
        ) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute(
            "SELECT partition FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION' "
            "AND asset_key = %s",
            (run_id, '["raw_archives"]'),
        )
        assert cursor.fetchall() == [("part_0",)]
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_CHECK_EVALUATION'",
            (run_id,),
        )
        assert cursor.fetchone()[0] == 3
    # Nothing went to sqlite files in DAGSTER_HOME.
    assert not list(home.rglob("*.db"))
