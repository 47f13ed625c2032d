"""A first visit's GET /donate answered without Flask (app.donate.first_visit)
is the answer the site gives: the same status, headers in the same order, the
same page but for its nonce and CSRF token, a session cookie Flask reads and a
token Flask-WTF accepts; anything else is still the site's, and a hook added
to the site fails here until the handler knows of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, request_started
from flask.sessions import SecureCookieSessionInterface
from werkzeug.test import EnvironBuilder

from app.donate.first_visit import FirstVisit
from app.i18n.prefix import LanguagePrefix

TOKEN = re.compile(r'(name="csrf_token"[^>]*value=")([^"]*)(")')
NONCE = re.compile(r'(name="nonce"[^>]*value=")([^"]*)(")')


def first_visit_of(app: Flask) -> FirstVisit:
    """The handler, found where the factory put it: inside the language prefix."""
    layer: Any = app.wsgi_app
    while not isinstance(layer, FirstVisit):
        layer = getattr(layer, "site", None) or layer.app
    return layer


def environ_of(app: Flask, path: str, headers: dict[str, str]) -> dict[str, Any]:
    """The environ FirstVisit sees: after the language prefix moved /ru."""
    seen: dict[str, Any] = {}

    def keep(environ: dict[str, Any], _start: Callable[..., Any]) -> list[bytes]:
        seen.update(environ)
        return []

    LanguagePrefix(keep, app.config["LANGUAGES"])(
        EnvironBuilder(path=path, headers=headers).get_environ(), lambda *a: None
    )
    return seen


def call(wsgi: Callable[..., Any], environ: dict[str, Any]) -> tuple[str, list[Any], str]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[Any], _exc: Any = None) -> None:
        got.update(status=status, headers=list(headers))

    body = b"".join(wsgi(dict(environ), start_response)).decode()
    return got["status"], got["headers"], body


def comparable(app: Flask, headers: list[tuple[str, str]], body: str) -> tuple[Any, ...]:
    """Headers with the cookie read back and the request id's length, and the
    page with its token and nonce taken out (new in every answer)."""
    stock = SecureCookieSessionInterface().get_signing_serializer(app)
    assert stock is not None
    out: list[tuple[str, Any]] = []
    for name, value in headers:
        if name == "Set-Cookie":
            cookie, _, attributes = value.partition(";")
            data = stock.loads(cookie.removeprefix("session="))
            assert set(data) == {"csrf_token"} and len(data["csrf_token"]) == 40
            out.append((name, attributes))
        elif name == "X-Request-Id":
            out.append((name, len(value)))
        else:
            out.append((name, value))
    page = NONCE.sub(r"\1-\3", TOKEN.sub(r"\1-\3", body))
    return tuple(out), page


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/donate", {}),
        ("/ru/donate", {}),
        ("/donate", {"Accept-Language": "ru-RU,ru;q=0.9"}),
        ("/donate", {"X-Forwarded-Proto": "https"}),
        ("/donate", {"X-Request-Id": "lb-1234.abcd"}),
    ],
)
def test_a_first_visit_gets_the_answer_the_site_gives(
    app: Flask, path: str, headers: dict[str, str]
) -> None:
    handler = first_visit_of(app)
    environ = environ_of(app, path, headers)
    assert handler.answer(environ, "x" * 32) is None  # nothing cached yet: the site's
    site_status, site_headers, site_body = call(handler.site, environ)  # renders, records
    assert handler.answer(environ, "x" * 32) is not None
    status, ours, body = call(handler, environ)
    assert status == site_status == "200 OK"
    assert comparable(app, ours, body) == comparable(app, site_headers, site_body)
    if "X-Request-Id" in headers:
        assert dict(ours)["X-Request-Id"] == headers["X-Request-Id"]
    if path.startswith("/ru") or "Accept-Language" in headers:
        assert 'lang="ru"' in body


def test_the_token_and_cookie_pass_flask_wtf_on_post(app: Flask) -> None:
    client = app.test_client()
    client.get("/donate")  # the site renders the page and records its headers
    client.delete_cookie("session")
    dispatched: list[Any] = []
    with request_started.connected_to(lambda sender, **_: dispatched.append(sender), app):
        response = client.get("/donate")
    assert not dispatched, "FirstVisit answered, not the site"
    token = TOKEN.search(response.get_data(as_text=True))
    assert token is not None
    passed = client.post("/donate", data={"csrf_token": token.group(2)})
    assert passed.status_code == 400  # the empty form's own errors
    assert "This form had expired" not in passed.get_data(as_text=True)
    client.delete_cookie("session")
    refused = client.post("/donate", data={"csrf_token": token.group(2)})  # no session
    assert "This form had expired" in refused.get_data(as_text=True)


def test_everything_else_is_the_sites(app: Flask) -> None:
    client = app.test_client()
    first = client.get("/donate")
    assert first.headers.getlist("Set-Cookie")
    again = client.get("/donate")  # a cookie: the site's (the session kept, no new cookie)
    assert again.status_code == 200 and not again.headers.getlist("Set-Cookie")
    assert TOKEN.search(again.get_data(as_text=True)) is not None
    client.delete_cookie("session")
    linked = client.get("/donate?amount=25&currency=eur")  # a query: the site's prefill
    assert linked.status_code == 200
    assert client.head("/donate").status_code == 200


@pytest.mark.settings(TURNSTILE_SITE_KEY="site-key", TURNSTILE_SECRET_KEY="secret")
def test_where_a_captcha_may_be_shown_the_site_answers(app: Flask) -> None:
    app.test_client().get("/donate")
    assert first_visit_of(app).answer(environ_of(app, "/donate", {}), "x" * 32) is None


def names(hooks: list[Any]) -> list[str]:
    return [f"{hook.__module__}.{hook.__qualname__}" for hook in hooks]


def test_the_handler_knows_every_hook_of_the_site(app: Flask) -> None:
    """FirstVisit does what these hooks do for a first visit (most nothing:
    no query, no cookie, a public page that is never limited). A new hook
    must be taught to it (or make it leave such visits to the site)."""
    assert names(app.before_request_funcs[None]) == [
        "app.observe.views.start_request",
        "app.factory.refuse_hostile_input",
        "app.factory._init_csrf.<locals>.csrf_protect",
        "app.extensions.Headers._force_https",
        "flask_talisman.talisman.Talisman._make_nonce",
        "app.appeals.views.count_arrival",
        "app.factory._skip_limiter_where_never_limited.<locals>.check_request_limit",
        "app.staff.gate._load_staff",
        "app.staff.gate._guard_ledger",
    ]
    assert names(app.after_request_funcs[None]) == [
        "app.guard.gate._allow_widget_script",
        "app.observe.views.finish_request",
        "app.extensions.Headers._set_response_headers",
        "app.factory._skip_limiter_where_never_limited.<locals>.inject_headers",
        "app.staff.gate._no_store",
    ]
    assert names(app.teardown_request_funcs[None]) == [
        "app.observe.views.forget_request",
        "app.factory._skip_limiter_where_never_limited.<locals>.release_context",
    ]
    assert names(app.teardown_appcontext_funcs) == ["app.extensions.close_db_session"]
    for blueprint in ("donate", "i18n"):
        assert not app.before_request_funcs.get(blueprint)
        assert not app.after_request_funcs.get(blueprint)
    assert not app.url_value_preprocessors.get(None)


def through_the_site_and_not(
    app: Flask, path: str, headers: dict[str, str]
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The same visit through every layer of the app, once with a cookie that
    holds no session (the site answers: a new session, as for a first visit)
    and once without (FirstVisit answers)."""
    client = app.test_client()
    client.get(path, headers=headers)  # the site renders the page and records its headers
    dispatched: list[Any] = []  # Flask's signal: the site handled a request

    def count(sender: Any, **_: Any) -> None:
        dispatched.append(sender)

    with request_started.connected_to(count, app):
        with_cookie = app.test_client()
        with_cookie.set_cookie("other", "1")  # a cookie, but no session in it
        site = with_cookie.get(path, headers=headers)
        assert len(dispatched) == 1
        ours = app.test_client().get(path, headers=headers)
        assert len(dispatched) == 1, "FirstVisit answered, not the site"
    return (
        comparable(app, list(site.headers), site.get_data(as_text=True)),
        comparable(app, list(ours.headers), ours.get_data(as_text=True)),
    )


@pytest.mark.settings(TRUSTED_PROXY_HOPS=1)
@pytest.mark.parametrize("path", ["/donate", "/ru/donate"])
def test_behind_a_proxy_a_first_visit_gets_the_sites_answer(app: Flask, path: str) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    site, ours = through_the_site_and_not(app, path, forwarded)
    assert ours == site
    plain_site, plain_ours = through_the_site_and_not(app, path, {"X-Forwarded-Proto": "http"})
    assert plain_ours == plain_site
