"""Configuration: `config/*.toml` defaults per environment, overridden by
environment variables of the same name in upper case (and a `.env` file).

Owns validation of the settings at start-up, so a misconfigured instance
refuses to start instead of failing on a donor. Secrets come only from the
environment, never from the TOML files.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from cryptography.fernet import Fernet
from dotenv import dotenv_values

from app.brand.page import colour_problem
from app.money import charge_step, is_currency_code

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
ENVIRONMENTS = ("development", "test", "production")
FREQUENCIES = ("once", "month", "year")

# Read from the environment only (secrets and deployment addresses).
ENV_ONLY = (
    "SECRET_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "REDIS_URL",
    "MAIL_SERVER",
    "MAIL_PORT",
    "MAIL_USERNAME",
    "MAIL_PASSWORD",
    "MAIL_FROM",
    "DATA_ENCRYPTION_KEY",
    "TURNSTILE_SECRET_KEY",
    "METRICS_TOKEN",
)
REQUIRED_IN_PRODUCTION = (
    "SECRET_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "REDIS_URL",
    "DATA_ENCRYPTION_KEY",
)
SECRET_KEY_MIN_LENGTH = 32
# Settings production must be given on purpose: their defaults are a guess.
EXPLICIT_IN_PRODUCTION = ("TRUSTED_PROXY_HOPS",)


class ConfigError(RuntimeError):
    """The configuration cannot work; the message says which setting and why."""


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _parse_env_value(raw: str) -> Any:
    """An override is TOML when it parses as a TOML value, else a plain string."""
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def environment() -> dict[str, str]:
    """os.environ over the project's `.env` file (the real environment wins)."""
    values = {k: v for k, v in dotenv_values(ROOT / ".env").items() if v is not None}
    values.update(os.environ)
    return values


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """All settings as a dict of upper-case keys (Flask's convention), validated."""
    environ = environment() if environ is None else environ
    overrides = dict(overrides or {})
    app_env = str(overrides.get("APP_ENV") or environ.get("APP_ENV") or "development")
    if app_env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, not {app_env!r}")

    data = _read_toml(CONFIG_DIR / "default.toml")
    own = _read_toml(CONFIG_DIR / f"{app_env}.toml")
    data.update(own)
    implicit = [
        name
        for name in EXPLICIT_IN_PRODUCTION
        if name not in environ and name not in overrides and name.lower() not in own
    ]
    settings: dict[str, Any] = {}
    for key, value in data.items():
        name = key.upper()
        settings[name] = _parse_env_value(environ[name]) if name in environ else value
    for name in ENV_ONLY:
        settings[name] = environ.get(name) or None
    settings["APP_ENV"] = app_env
    settings["FLASK_DEBUG"] = environ.get("FLASK_DEBUG")
    if app_env == "development" and "PUBLIC_BASE_URL" not in environ and environ.get("DEV_PORT"):
        settings["PUBLIC_BASE_URL"] = _dev_server_url(environ)
    settings.update(overrides)
    _finish(settings)
    if app_env == "production":
        if implicit:
            raise ConfigError(
                f"production needs {implicit[0]} set explicitly (0 is a valid answer)"
            )
        _check_production(settings)
    return settings


def _finish(settings: dict[str, Any]) -> None:
    app_env = settings["APP_ENV"]
    if app_env == "production":
        missing = [name for name in REQUIRED_IN_PRODUCTION if not settings.get(name)]
        if missing:
            raise ConfigError(f"production needs {', '.join(missing)} in the environment")
    if not settings.get("SECRET_KEY"):
        settings["SECRET_KEY"] = _development_secret("secret_key", lambda: secrets.token_hex(32))
    settings["DATA_ENCRYPTION_KEYS"] = _encryption_keys(settings)
    try:
        settings["TRUSTED_PROXY_HOPS"] = int(settings.get("TRUSTED_PROXY_HOPS") or 0)
    except (TypeError, ValueError) as exc:
        raise ConfigError("TRUSTED_PROXY_HOPS must be a whole number, 0 or more") from exc
    if settings["TRUSTED_PROXY_HOPS"] < 0:
        raise ConfigError("TRUSTED_PROXY_HOPS must be a whole number, 0 or more")
    secrets_list = settings.get("STRIPE_WEBHOOK_SECRET") or ""
    if isinstance(secrets_list, str):
        secrets_list = [s.strip() for s in secrets_list.split(",") if s.strip()]
    if not secrets_list and not settings.get("STRIPE_SECRET_KEY"):
        # The offline sandbox signs its events with a secret of its own.
        digest = hashlib.sha256(f"sandbox:{settings['SECRET_KEY']}".encode()).hexdigest()
        secrets_list = [f"whsec_sandbox_{digest[:32]}"]
    settings["STRIPE_WEBHOOK_SECRETS"] = list(secrets_list)
    settings["MAX_CONTENT_LENGTH"] = int(settings["MAX_CONTENT_LENGTH"])
    settings["PUBLIC_BASE_URL"] = str(settings["PUBLIC_BASE_URL"]).rstrip("/")
    settings["DATABASE_URL"] = _anchor_sqlite_path(str(settings["DATABASE_URL"]))
    _check_currencies(settings)
    _check_page(settings)


def _dev_server_url(environ: Mapping[str, str]) -> str:
    """Where `make run` serves (DEV_HOST, DEV_PORT), as a browser reaches it:
    a server on every interface is still reached on loopback."""
    host = environ.get("DEV_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (an address to reach, not to bind)
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = environ["DEV_PORT"].strip()
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"DEV_PORT must be a port number, not {port!r}")
    return f"http://{host}:{int(port)}"


def _anchor_sqlite_path(url: str) -> str:
    """A relative SQLite path means relative to the project, not to the cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        path = url.removeprefix(prefix)
        if path and path != ":memory:" and not path.startswith(("file:", "?")):
            return prefix + str(ROOT / path)
    return url


def _development_secret(name: str, make: Callable[[], str]) -> str:
    """A random key kept under instance/ so sessions (and what it encrypted)
    survive a restart of `make run`."""
    path = ROOT / "instance" / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = make()
    path.write_text(key)
    path.chmod(0o600)
    return key


def _encryption_keys(settings: dict[str, Any]) -> list[str]:
    """DATA_ENCRYPTION_KEY: Fernet keys, comma-separated, newest first (the
    first encrypts, every one decrypts); made and kept in instance/ outside
    production."""
    raw = settings.get("DATA_ENCRYPTION_KEY") or ""
    if not raw and settings["APP_ENV"] != "production":
        raw = _development_secret("data_encryption_key", lambda: Fernet.generate_key().decode())
    keys = [key.strip() for key in str(raw).split(",") if key.strip()]
    for key in keys:
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "DATA_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated"
            ) from exc
    return keys


def _check_production(settings: dict[str, Any]) -> None:
    """What CONTRACT.md asks of production; one line naming the setting each."""
    if len(str(settings["SECRET_KEY"])) < SECRET_KEY_MIN_LENGTH:
        raise ConfigError(f"SECRET_KEY must be at least {SECRET_KEY_MIN_LENGTH} characters")
    if not str(settings.get("PUBLIC_BASE_URL") or "").startswith("https://"):
        raise ConfigError("PUBLIC_BASE_URL must be the site's https:// address in production")
    if not settings["STRIPE_WEBHOOK_SECRETS"]:
        raise ConfigError("STRIPE_WEBHOOK_SECRET must list at least one whsec_... secret")
    if not settings["DATA_ENCRYPTION_KEYS"]:
        raise ConfigError("production needs DATA_ENCRYPTION_KEY in the environment")
    debug = str(settings.get("FLASK_DEBUG") or "").strip().lower()
    if debug not in ("", "0", "false", "no") or settings.get("DEBUG"):
        raise ConfigError("FLASK_DEBUG (debug mode) must be off in production")


def _check_currencies(settings: dict[str, Any]) -> None:
    currencies = settings["CURRENCIES"]
    if not currencies:
        raise ConfigError("CURRENCIES must list at least one currency")
    limits = settings["CURRENCY_LIMITS"]
    presets = settings["PRESETS"]
    for code in currencies:
        if not is_currency_code(code):
            raise ConfigError(f"currency {code!r} must be a lower-case ISO 4217 code")
        if code not in limits or code not in presets:
            raise ConfigError(f"currency {code!r} needs currency_limits.{code} and presets.{code}")
        low, high = int(limits[code]["min"]), int(limits[code]["max"])
        if not 0 < low <= high:
            raise ConfigError(f"currency_limits.{code}: need 0 < min <= max")
        step = charge_step(code)
        for frequency in FREQUENCIES:
            for amount in presets[code].get(frequency, []):
                if not (low <= amount <= high and amount % step == 0):
                    raise ConfigError(f"presets.{code}.{frequency}: {amount} is outside the limits")
        fee = settings["PROCESSING_FEES"].get(code)
        if not isinstance(fee, dict) or not {"rate_bp", "fixed"} <= fee.keys():
            raise ConfigError(f"processing_fees.{code} needs rate_bp and fixed")
        if not (0 <= int(fee["rate_bp"]) < 10_000 and int(fee["fixed"]) >= 0):
            raise ConfigError(f"processing_fees.{code}: need 0 <= rate_bp < 10000, fixed >= 0")
    fixed = settings.get("FEE_COVER_FIXED") or {}
    for code, amount in fixed.items():
        # A key of a table is the table's: a setting written below
        # [fee_cover_fixed] in a TOML file lands here, not at the top level.
        if code not in currencies:
            raise ConfigError(
                f"fee_cover_fixed.{code}: not one of the currencies (a setting meant for the"
                " top level must come before any [table] in its file)"
            )
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ConfigError(
                f"fee_cover_fixed.{code} must be a whole number of minor units, 0 or more"
            )
    if settings["DEFAULT_FREQUENCY"] not in FREQUENCIES:
        raise ConfigError("DEFAULT_FREQUENCY must be once, month or year")
    rate = settings["FEE_COVER_RATE_BP"]
    if rate not in ("", None):  # empty: each currency's processing_fees rate
        if not (str(rate).isdigit() and 0 <= int(rate) < 10_000):
            raise ConfigError("FEE_COVER_RATE_BP must be empty or between 0 and 9999")
        settings["FEE_COVER_RATE_BP"] = int(rate)


SOURCE_LANGUAGE = "en"  # the language of the msgids themselves: needs no catalog


def _check_page(settings: dict[str, Any]) -> None:
    """Languages Babel knows, readable colours, a logo that exists."""
    languages = settings.get("LANGUAGES")
    if not isinstance(languages, list) or not languages:
        raise ConfigError('LANGUAGES must list at least one language, like ["en", "ru"]')
    for code in languages:
        try:
            Locale.parse(str(code))
        except (ValueError, UnknownLocaleError) as exc:
            raise ConfigError(f"LANGUAGES: {code!r} is not a language Babel knows") from exc
    for code in languages:
        catalog = ROOT / "translations" / str(code) / "LC_MESSAGES" / "messages.po"
        if code != SOURCE_LANGUAGE and not catalog.is_file():
            raise ConfigError(
                f"LANGUAGES: {code!r} has no catalog translations/{code}/LC_MESSAGES/messages.po"
            )
        compiled = catalog.with_suffix(".mo")
        if settings["APP_ENV"] == "production" and catalog.is_file() and not compiled.is_file():
            raise ConfigError(f"LANGUAGES: {code!r} is not compiled (run `make catalogs`)")
    localised = settings.get("LOCALISED") or {}
    if not isinstance(localised, dict) or any(not isinstance(v, dict) for v in localised.values()):
        raise ConfigError("LOCALISED must be tables [localised.<lang>] of page settings")
    problem = colour_problem(settings)
    if problem:
        raise ConfigError(problem)
    for table in [settings, *localised.values()]:
        logo = str(table.get("LOGO", table.get("logo")) or "")
        if logo and not (ROOT / "static" / logo).is_file():
            raise ConfigError(f"LOGO: static/{logo} does not exist")
