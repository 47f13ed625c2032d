"""Every `donations` command answers a mistake (a bad date, a missing
argument, an unknown option or command, a configuration error at start) with
one line naming the option or setting, no usage block and no traceback, and
exit status 2; `events failed` and `ledger summary` speak to a person."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskCliRunner

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]


def one_line_error(output: str, *names: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    assert "Usage:" not in output and "Traceback" not in output and "--help" not in output
    for name in names:
        assert name in lines[0], output


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["ledger", "export", "--since", "2026-13-01"], ["--since", "2026-13-01"]),
        (["ledger", "summary", "--json", "--until", "yesterday"], ["--until"]),
        (["ledger", "export", "--bogus"], ["--bogus"]),
        (["ledger", "nope"], ["nope"]),
        (["nope"], ["nope"]),
        (["staff", "create", "--role", "admin"], ["EMAIL"]),
        (["staff", "create", "a@example.org", "--role", "king"], ["--role", "king"]),
        (["events", "replay", "--frobnicate"], ["--frobnicate"]),
        (["dev", "seed", "--payments", "many"], ["--payments"]),
        (["db", "upgrade", "--x"], ["--x"]),
    ],
)
def test_a_usage_mistake_is_one_line_naming_the_option_with_status_2(
    runner: FlaskCliRunner, args: list[str], names: list[str]
) -> None:
    result = runner.invoke(main, args=args)
    assert result.exit_code == 2, result.output
    one_line_error(result.output, *names)


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("APP_ENV", "DATABASE_URL")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("args", [["ledger", "summary", "--json"], ["events", "failed"], ["run"]])
def test_a_configuration_error_at_start_is_one_line_naming_the_setting(
    tmp_path: Path, args: list[str]
) -> None:
    result = run_cli(*args, APP_ENV="staging", DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    assert result.returncode == 2, result.stderr
    one_line_error(result.stderr, "APP_ENV", "staging")


def test_help_works_without_loading_a_broken_configuration(tmp_path: Path) -> None:
    result = run_cli("--help", APP_ENV="staging", DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "ledger" in result.stdout


def test_events_failed_says_when_there_are_none(runner: FlaskCliRunner) -> None:
    result = runner.invoke(main, args=["events", "failed"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "no failed or dead events"
