"""GET /healthz: 200 when the database answers, 503 when it does not; and
GET /, which leads to the donation page (with the link's query string)."""

from __future__ import annotations

import logging

from flask import Blueprint, redirect, request, url_for
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from app.extensions import database

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    try:
        with database().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("health check: database unreachable (%s)", type(exc).__name__)
        return {"status": "unavailable", "database": "unreachable"}, 503
    return {"status": "ok", "database": "ok"}, 200


@bp.get("/")
def root() -> Response:
    target = url_for("donate.form")
    query = request.query_string.decode("latin-1")
    return redirect(f"{target}?{query}" if query else target, 302)
