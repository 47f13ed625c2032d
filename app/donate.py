"""Donor-facing donation pages (being built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("donate", __name__)


@bp.get("/donate")
def form() -> str:
    return "donate"


def render_after_csrf_failure() -> tuple[str, int] | None:
    return None
