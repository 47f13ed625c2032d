"""Start-up checks and the house rules about what imports what."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


def test_the_log_settings_are_top_level_settings_an_environment_can_set() -> None:
    # They once stood below [fee_cover_fixed] in default.toml, so they were that
    # table's keys: the logs were never configured outside production.
    development = load_settings(environ={"APP_ENV": "development", "SECRET_KEY": "k"})
    assert (development["LOG_FORMAT"], development["LOG_LEVEL"]) == ("text", "INFO")
    assert development["FEE_COVER_FIXED"] == {}
    assert load_settings(environ={"SECRET_KEY": "k", "LOG_FORMAT": "json"})["LOG_FORMAT"] == "json"


def test_fee_cover_fixed_is_refused_for_a_key_that_is_not_a_currency() -> None:
    with pytest.raises(
        ConfigError, match=r"fee_cover_fixed\.log_format: not one of the currencies"
    ):
        load_settings(
            environ={"APP_ENV": "test", "SECRET_KEY": "k"},
            overrides={"FEE_COVER_FIXED": {"log_format": "text"}},
        )
    with pytest.raises(ConfigError, match=r"fee_cover_fixed\.usd must be a whole number"):
        load_settings(
            environ={"APP_ENV": "test", "SECRET_KEY": "k"},
            overrides={"FEE_COVER_FIXED": {"usd": -1}},
        )
    settings = load_settings(
        environ={"APP_ENV": "test", "SECRET_KEY": "k"}, overrides={"FEE_COVER_FIXED": {"usd": 25}}
    )
    assert settings["FEE_COVER_FIXED"] == {"usd": 25}


def test_webhook_secrets_are_a_comma_separated_list_for_rotation() -> None:
    settings = load_settings(
        environ={"APP_ENV": "test", "SECRET_KEY": "k", "STRIPE_WEBHOOK_SECRET": "whsec_a, whsec_b"}
    )
    assert settings["STRIPE_WEBHOOK_SECRETS"] == ["whsec_a", "whsec_b"]


def test_an_unknown_app_env_is_refused() -> None:
    with pytest.raises(ConfigError, match="APP_ENV"):
        load_settings(environ={"APP_ENV": "staging"})


# -- the layout: one package per feature (README, "Architecture") ---------------

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(path for top in ("app", "webhooks") for path in (ROOT / top).rglob("*.py"))
# The web edge: blueprints, forms, command groups and the wiring. Everything
# else under app/ and webhooks/ is the core, which imports no Flask and no
# `stripe` (app/stripe_api.py, the one wrapper, imports `stripe` only).
EDGE_FILES = {"views.py", "admin.py", "gate.py", "area.py", "forms.py", "cli.py"}
EDGE_MODULES = {
    "app",
    "app.cli",
    "app.factory",
    "app.extensions",
    "app.health",
    "app.finance.events",
    "webhooks.receiver",
    "webhooks.wsgi",
    "app.donate.first_visit",  # WSGI: GET /donate for a first visit, beside its view
}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists()


def is_module(name: str) -> bool:
    return is_package(name) or (ROOT / Path(*name.split("."))).with_suffix(".py").exists()


MODULES = {module_name(path): path for path in SOURCES}
CORE = sorted(
    name
    for name, path in MODULES.items()
    if path.name not in EDGE_FILES and name not in EDGE_MODULES and name != "app.stripe_api"
)


def imports_of(path: Path) -> list[tuple[ast.stmt, str, list[str]]]:
    """Every import in a file (at any depth, TYPE_CHECKING blocks left out) as
    (node, module, names): `import a.b` gives ("a.b", []), `from a import b, c`
    ("a", ["b", "c"])."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found: list[tuple[ast.stmt, str, list[str]]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.extend((node, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node, node.module, [alias.name for alias in node.names]))
    return found


def project_targets(module: str, names: list[str]) -> list[str]:
    """The project modules an import statement loads."""
    if module.split(".")[0] not in ("app", "webhooks"):
        return []
    submodules = [f"{module}.{name}" for name in names if is_module(f"{module}.{name}")]
    plain = [name for name in names if not is_module(f"{module}.{name}")]
    return submodules + ([module] if plain or not names else [])


def test_the_core_imports_neither_flask_nor_stripe() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {CORE!r}:\n"
        "    importlib.import_module(name)\n"
        "    bad = [m for m in ('flask', 'stripe') if m in sys.modules]\n"
        "    if bad:\n"
        "        print(name, ','.join(bad))\n"
        "        break\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == ""
    assert {"app.ledger", "app.payments", "webhooks.handlers", "app.finance.reports"} <= set(CORE)


def test_no_module_imports_a_private_name_of_another_module() -> None:
    offences = []
    for name, path in MODULES.items():
        aliases: dict[str, str] = {}  # local name -> project module it stands for
        for node, module, _names in imports_of(path):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    target = f"{module}.{alias.name}"
                    if is_module(target):
                        aliases[alias.asname or alias.name] = target
                    elif alias.name.startswith("_") and module.split(".")[0] in ("app", "webhooks"):
                        offences.append(f"{name}: from {module} import {alias.name}")
            else:
                for alias in node.names:
                    if alias.asname and is_module(alias.name):
                        aliases[alias.asname] = alias.name
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offences.append(f"{name}: {node.value.id}.{node.attr}")
    assert offences == []


# What app/ may import of webhooks outside create_app: the inbox's table, which
# Alembic's metadata (app.schema) and the finance pages read.
WEBHOOKS_TABLES = {("webhooks.inbox", "StripeEvent")}


def test_app_imports_webhooks_only_inside_create_app() -> None:
    """STYLE: "app imports webhooks only inside create_app" (its code comes to
    the rest of app as app.payments.Webhooks, in app.extensions)."""
    offences = []
    for name, path in MODULES.items():
        if not name.startswith("app"):
            continue
        in_factory_functions: set[int] = set()  # line numbers (create_app and its helpers)
        if name == "app.factory":
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef):
                    in_factory_functions.update(range(node.lineno, (node.end_lineno or 0) + 1))
        for node, module, names in imports_of(path):
            if module.split(".")[0] != "webhooks" or node.lineno in in_factory_functions:
                continue
            if names and all((module, n) in WEBHOOKS_TABLES for n in names):
                continue
            offences.append(f"{name}:{node.lineno}: {module} {names}")
    assert offences == []


def test_no_import_stands_below_a_definition() -> None:
    offences = []
    for name, path in MODULES.items():
        seen_definition = False
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                seen_definition = True
            elif isinstance(node, ast.Import | ast.ImportFrom) and seen_definition:
                offences.append(f"{name}:{node.lineno}")
    assert offences == []


def test_no_two_modules_import_each_other_even_through_others() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for _node, module, names in imports_of(path):
            graph[name].update(t for t in project_targets(module, names) if t in graph)
    # Tarjan's strongly connected components: any with two modules is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert circles == []


def test_features_are_packages_with_the_same_file_names() -> None:
    prefixed = [
        str(path.relative_to(ROOT))
        for path in SOURCES
        if path.stem.endswith(("_views", "_cli")) or path.stem in ("utils", "helpers")
    ]
    assert prefixed == []
    top = sorted(p.name for p in (ROOT / "app").iterdir() if p.suffix == ".py")
    assert top == [
        "__init__.py",
        "cli.py",
        "clock.py",
        "db.py",
        "extensions.py",
        "factory.py",
        "health.py",
        "migrate.py",
        "money.py",
        "payments.py",
        "schema.py",
        "settings.py",
        "stripe_api.py",
    ]
    for views in (ROOT / "app").rglob("views.py"):
        tree = ast.parse(views.read_text())
        first = next(
            node
            for node in tree.body
            if not isinstance(node, ast.Import | ast.ImportFrom | ast.Expr)
        )
        assert "bp = Blueprint(" in ast.unparse(first).replace("bp: Blueprint = ", "bp = "), views


def test_no_module_passes_the_size_guide_without_saying_why() -> None:
    too_long = []
    for name, path in MODULES.items():
        lines = path.read_text().count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "Why one module:" not in docstring:
            too_long.append(f"{name}: {lines} lines")
    assert too_long == []


# -- production refuses weak settings (CONTRACT.md, "Configuration") -----------

GOOD_PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "s" * 32,
    "STRIPE_SECRET_KEY": "sk_live_donations_suite",
    "STRIPE_WEBHOOK_SECRET": "whsec_live_suite",
    "PUBLIC_BASE_URL": "https://donate.example.org",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DATA_ENCRYPTION_KEY": "a" * 43 + "=",
    "TRUSTED_PROXY_HOPS": "1",
}


def test_a_well_configured_production_starts_with_2fa_required() -> None:
    settings = load_settings(environ=GOOD_PRODUCTION)
    assert settings["TRUSTED_PROXY_HOPS"] == 1
    assert settings["STAFF_REQUIRE_2FA"] is True


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"SECRET_KEY": "k"}, "SECRET_KEY"),
        ({"SECRET_KEY": "s" * 31}, "SECRET_KEY"),
        ({"PUBLIC_BASE_URL": None}, "PUBLIC_BASE_URL"),
        ({"PUBLIC_BASE_URL": "http://donate.example.org"}, "PUBLIC_BASE_URL"),
        ({"STRIPE_WEBHOOK_SECRET": " , "}, "STRIPE_WEBHOOK_SECRET"),
        ({"REDIS_URL": None}, "REDIS_URL"),
        ({"DATA_ENCRYPTION_KEY": None}, "DATA_ENCRYPTION_KEY"),
        ({"DATA_ENCRYPTION_KEY": "not a fernet key"}, "DATA_ENCRYPTION_KEY"),
        ({"TRUSTED_PROXY_HOPS": None}, "TRUSTED_PROXY_HOPS"),
        ({"TRUSTED_PROXY_HOPS": "-1"}, "TRUSTED_PROXY_HOPS"),
        ({"FLASK_DEBUG": "1"}, "FLASK_DEBUG"),
    ],
)
def test_production_refuses_each_weak_setting_in_one_line_naming_it(
    change: dict[str, str | None], named: str
) -> None:
    environ = {k: v for k, v in {**GOOD_PRODUCTION, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=named) as caught:
        load_settings(environ=environ)
    assert "\n" not in str(caught.value)


def test_zero_proxy_hops_is_a_valid_explicit_answer_in_production() -> None:
    settings = load_settings(environ={**GOOD_PRODUCTION, "TRUSTED_PROXY_HOPS": "0"})
    assert settings["TRUSTED_PROXY_HOPS"] == 0


def test_outside_production_a_data_encryption_key_is_made_and_kept() -> None:
    first = load_settings(environ={"APP_ENV": "test", "SECRET_KEY": "k"})
    second = load_settings(environ={"APP_ENV": "test", "SECRET_KEY": "k"})
    assert first["DATA_ENCRYPTION_KEYS"]
    assert first["DATA_ENCRYPTION_KEYS"] == second["DATA_ENCRYPTION_KEYS"]
    new, old = "b" * 43 + "=", "a" * 43 + "="
    rotated = load_settings(
        environ={"APP_ENV": "test", "SECRET_KEY": "k", "DATA_ENCRYPTION_KEY": f"{new}, {old}"}
    )
    assert rotated["DATA_ENCRYPTION_KEYS"] == [new, old]


# -- templates: nothing inline that the Content-Security-Policy would block ----

INLINE = (
    (r"<script(?![^>]*\bsrc=)[^>]*>", "inline script"),
    (r"<style\b", "style block"),
    (r"\sstyle\s*=", "style attribute"),
    (r"\son[a-z]+\s*=", "event-handler attribute"),
    (r"javascript:", "javascript: URL"),
)


def test_no_template_has_inline_script_style_or_event_handlers() -> None:
    import re

    offences = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        source = path.read_text()
        for pattern, what in INLINE:
            for match in re.finditer(pattern, source, re.IGNORECASE):
                line = source.count("\n", 0, match.start()) + 1
                offences.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert offences == []
