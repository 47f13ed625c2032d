"""The donations web application.

This package's modules are split in two: the core (money, clock, db, models,
ledger) imports no Flask and no `stripe`; the web side (factory, views, cli)
imports the core. `create_app` lives in `app.factory` so that importing the
core never pulls Flask in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask application (see `app.factory.create_app`)."""
    from app.factory import create_app as _create_app

    return _create_app(test_config)
