"""The newsroom's colours as a stylesheet (GET /brand.css, so the CSP keeps
forbidding inline style) and `page` (app.brand.page.Page for the request's
language) in every template. Reads settings only.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app
from flask_babel import get_locale

from app.brand.page import Page, stylesheet, stylesheet_version

bp = Blueprint("brand", __name__)


@bp.get("/brand.css")
def colours() -> Response:
    response = Response(stylesheet(current_app.config), mimetype="text/css")
    response.cache_control.public = True
    response.cache_control.max_age = 86400  # the link carries ?v=<hash of the colours>
    return response


@bp.app_context_processor
def page() -> dict[str, Any]:
    config = current_app.config
    language = str(get_locale() or config["LANGUAGES"][0])
    return {
        "page": Page.for_language(config, language),
        "brand_css_version": stylesheet_version(config),
    }
