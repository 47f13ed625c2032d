"""What the posting and worker benchmarks share: a result row (the median of
its runs against a target), the table they print, the JSON file `make bench`
collects (a list of rows: name, value, unit, target, reference, met), and a
fresh PostgreSQL database per run. Loopback only; needs only the app.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql


@dataclass
class Row:
    name: str
    value: float
    unit: str
    target: str | None
    met: bool
    reference: str | None = None
    runs: list[float] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        name: str,
        runs: list[float],
        unit: str,
        *,
        target: float | None,
        at_least: bool,
        reference: str | None = None,
        exact: bool = True,
    ) -> Row:
        """The median of `runs` against `target` (at least it, or at most);
        never met when the totals were not `exact`."""
        value = statistics.median(runs)
        met = exact
        text = None
        if target is not None:
            met = met and (value >= target if at_least else value <= target)
            text = f"{'>=' if at_least else '<='} {target:g} {unit}"
        if not exact:
            name += " (totals NOT exact)"
        return cls(name, value, unit, text, met, reference, runs)

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "name": self.name,
            "value": round(self.value, 3),
            "unit": self.unit,
            "target": self.target,
            "met": self.met,
        }
        if self.reference:
            found["reference"] = self.reference
        return found


def _figure(value: float) -> str:
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"


def print_table(rows: list[Row]) -> None:
    print("| measure | target | median | runs | met |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        runs = ", ".join(_figure(r) for r in row.runs)
        print(
            f"| {row.name} | {row.target or '-'} | {_figure(row.value)} {row.unit} | {runs} "
            f"| {'yes' if row.met else 'NO'} |"
        )


def write_json(path: str, rows: list[Row]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps([row.as_json() for row in rows], indent=2) + "\n")


def backend_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a PostgreSQL backend on this machine has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_url(admin_url: str, name: str) -> str:
    return re.sub(r"/[^/]*$", f"/{name}", admin_url)


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and create the database `name`, migrated; its URL."""
    from app.migrate import upgrade

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(admin_url, name)
    upgrade(url)
    return url
