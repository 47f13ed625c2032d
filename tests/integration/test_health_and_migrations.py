"""The database behind the app: health check, migrations, and the models and
migrations agreeing."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask.testing import FlaskClient
from sqlalchemy import create_engine

from app import create_app
from app.db import Base, normalise_url


def test_healthz_answers_200_when_the_database_answers(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_answers_503_when_the_database_does_not(tmp_path) -> None:
    app = create_app(
        {
            "APP_ENV": "test",
            "SECRET_KEY": "x",
            # a directory cannot be opened as an SQLite database
            "DATABASE_URL": f"sqlite:///{tmp_path}",
        }
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"


def test_models_and_migrations_do_not_differ(db_url: str) -> None:
    engine = create_engine(normalise_url(db_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def test_upgrade_is_safe_to_run_again(db_url: str) -> None:
    from app.migrate import upgrade

    upgrade(db_url)  # already at head: nothing to do, no error
