from flask_migrate import upgrade
from sqlalchemy import inspect

from oidc_provider.db import db


def test_migrations_build_the_same_tables_as_the_models(make_app, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'migrated.sqlite3'}")
    with app.app_context():
        db.drop_all()
        upgrade()
        tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert tables == set(db.metadata.tables)
        for name, table in db.metadata.tables.items():
            columns = {c["name"] for c in inspect(db.engine).get_columns(name)}
            assert columns == set(table.columns.keys()), name
