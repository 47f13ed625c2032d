"""The references the web benchmarks are measured against: a bare Flask app on
the same gunicorn settings that answers the webhook route with 200 (reading
the body, no signature, no database) and renders the donation page's own HTML
as a template with no context (no session, CSRF, Babel, Talisman or queries).

    gunicorn -c config/gunicorn.conf.py --chdir bench "bare:create_app()"

BENCH_DONATE_HTML names the file holding the page's HTML (bench/web.py saves
what the real app served). Never imported by the app.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, render_template, request


def create_app() -> Flask:
    html = Path(os.environ["BENCH_DONATE_HTML"])
    app = Flask("bare", template_folder=str(html.parent))

    @app.post("/webhooks/stripe")
    def webhook() -> tuple[dict[str, str], int]:
        request.get_data()
        return {"received": "stored"}, 200

    @app.get("/donate")
    def donate() -> str:
        return render_template(html.name)

    return app
