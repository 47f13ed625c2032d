"""Start-up checks and the house rules about what imports what."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.settings import ConfigError, load_settings


def test_production_refuses_to_start_without_its_secrets() -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY, STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET"):
        load_settings(environ={"APP_ENV": "production"})


def test_an_environment_variable_overrides_a_toml_setting_as_toml() -> None:
    settings = load_settings(
        environ={
            "APP_ENV": "test",
            "SECRET_KEY": "k",
            "FEE_COVER_RATE_BP": "300",
            "CURRENCIES": '["eur"]',
        }
    )
    assert settings["FEE_COVER_RATE_BP"] == 300
    assert settings["CURRENCIES"] == ["eur"]


def test_a_currency_without_presets_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="currency 'chf' needs"):
        load_settings(
            environ={"APP_ENV": "test", "SECRET_KEY": "k", "CURRENCIES": '["usd", "chf"]'}
        )


def test_webhook_secrets_are_a_comma_separated_list_for_rotation() -> None:
    settings = load_settings(
        environ={"APP_ENV": "test", "SECRET_KEY": "k", "STRIPE_WEBHOOK_SECRET": "whsec_a, whsec_b"}
    )
    assert settings["STRIPE_WEBHOOK_SECRETS"] == ["whsec_a", "whsec_b"]


def test_an_unknown_app_env_is_refused() -> None:
    with pytest.raises(ConfigError, match="APP_ENV"):
        load_settings(environ={"APP_ENV": "staging"})


def test_the_core_imports_neither_flask_nor_stripe() -> None:
    code = (
        "import sys, app.money, app.clock, app.db, app.donors, app.donate.models, app.donate.checkout, app.ledger,"
        " app.ledger.export, app.ledger.records, app.ledger.totals, app.staff, app.finance.reports, app.seed, webhooks.mapping;"
        "bad = [m for m in ('flask', 'stripe') if m in sys.modules];"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
