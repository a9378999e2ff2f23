"""`flask db upgrade` from every instance at once (reliability review
experiment 6, defect 11): on PostgreSQL the second waits for the first's lock,
then finds nothing to do."""

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from oidc_provider.db import db

ROOT = Path(__file__).resolve().parent.parent
FLASK = Path(sys.executable).parent / "flask"


def test_two_concurrent_upgrades_on_an_empty_postgresql_database_both_succeed(empty_pg_database, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": empty_pg_database,
        "SECRET_KEY": "test-secret-key",
        "OIDC_KEYS_DIR": str(tmp_path / "keys"),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    command = [str(FLASK), "--app", "oidc_provider", "db", "upgrade"]
    upgrades = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in upgrades]
    assert [process.returncode for process in upgrades] == [0, 0], outputs

    both = "".join(outputs)
    assert both.count("Running upgrade  -> c253b6979683") == 1  # the second found nothing to do
    assert "Traceback" not in both and "UniqueViolation" not in both
    engine = create_engine(empty_pg_database)
    with engine.connect() as connection:
        [head] = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert tables == set(db.metadata.tables)
    heads = subprocess.run(
        [str(FLASK), "--app", "oidc_provider", "db", "heads"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert heads.stdout.split()[0] == head
