"""Runs Alembic against a database URL: used by `donations db upgrade` and the
tests. Never called by create_app: migrating is an operator's step."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from app.settings import ROOT


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
