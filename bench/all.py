"""`make bench`: every benchmark, on loopback only, each bounded in time, then
ONE table (every figure beside its target and the reference measured in the
same run) with the machine's cores, memory and load, also written as JSON.

    python bench/all.py [--only web,posting,worker,sync-report,sync-posting,ledger]

Each step is a script of bench/ run with `--json PATH`, writing a list of rows
{name, value, unit, target, reference, met[, reason]}. A missed row without
its own reason takes bench/reasons.json's first "step: part of the name" key
that fits it (the measured figures' explanation, kept beside them).
Results: bench-results/all.json and all.md (git-ignored). Exit 1 when a target
is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAYMENTS = os.environ.get("BENCH_PAYMENTS", "1000000")
CHARGES = os.environ.get("BENCH_CHARGES", "20000")
SYNC_PAYMENTS = os.environ.get("BENCH_SYNC_PAYMENTS", "1000000")
SYNC_POSTING = os.environ.get("BENCH_SYNC_POSTING", "100000")
REASONS = Path(__file__).resolve().parent / "reasons.json"

# `--only sync` means both of its steps
ALIASES = {"sync": ["sync-report", "sync-posting"]}

# The sync report reads the finance step's seeded ledger (donations_bench) when
# both want the same size; a ledger of its own otherwise, so neither reseeds
# the other's on every run.
LEDGER_DATABASE = os.environ.get("BENCH_DATABASE", "donations_bench")
SYNC_LEDGER = LEDGER_DATABASE if SYNC_PAYMENTS == PAYMENTS else "donations_bench_sync"

# name -> the script and its arguments (each also gets --json PATH)
STEPS: dict[str, list[str]] = {
    "web": ["bench/web.py"],
    "posting": ["bench/posting.py", "--charges", CHARGES],
    "worker": ["bench/worker.py"],
    "sync-report": [
        "bench/sync.py",
        "--only",
        "report",
        "--payments",
        SYNC_PAYMENTS,
        "--ledger-database",
        SYNC_LEDGER,
    ],
    "sync-posting": ["bench/sync.py", "--only", "posting", "--posting", SYNC_POSTING],
    "ledger": ["bench/run.py", "--payments", PAYMENTS],
}


def python_speed_ms() -> float:
    """CPU milliseconds of a fixed piece of pure Python (a loop building small
    dicts and strings, as a request's code does), best of three: how fast
    this host runs our kind of code at the moment. The hosts differ by two
    times and more from day to day, so a run's figures are compared with
    another run's through it, or through each row's own reference."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        total = 0
        for i in range(300_000):
            item = {"id": i, "name": f"donor-{i}", "amount": i % 977}
            total += len(item["name"]) + item["amount"]
        best = min(best, time.process_time() - started)
    return round(best * 1000, 1)


def machine() -> dict[str, Any]:
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python_speed_ms": python_speed_ms(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def accepts_json(script: str) -> bool:
    found = subprocess.run(  # noqa: S603 (our own scripts)
        [sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return "--json" in found.stdout


def run_step(name: str, argv: list[str], timeout: float) -> list[dict[str, Any]]:
    script = argv[0]
    if not accepts_json(script):
        return [_note(name, f"not run: {script} has no --json in this version")]
    with tempfile.TemporaryDirectory(prefix="donations-bench-") as work:
        out = Path(work) / "rows.json"
        started = time.monotonic()
        print(f"== {name}: {' '.join(argv)}", flush=True)
        try:
            done = subprocess.run(  # noqa: S603 (our own scripts)
                [sys.executable, *argv, "--json", str(out)], cwd=ROOT, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return [_note(name, f"stopped after its {timeout:.0f} s budget", met=False)]
        seconds = time.monotonic() - started
        if not out.exists():
            return [_note(name, f"exited {done.returncode} without results", met=False)]
        rows: list[dict[str, Any]] = json.loads(out.read_text())
    for row in rows:
        row.setdefault("step", name)
        row.setdefault("step_seconds", round(seconds, 1))
    if done.returncode not in (0, 1):  # 1: a target missed; anything else: it broke
        rows.append(_note(name, f"exited {done.returncode} after writing its rows", met=False))
    return rows


def add_reasons(rows: list[dict[str, Any]], reasons: dict[str, str]) -> None:
    """Every missed row gets a reason: its own, else reasons.json's."""
    for row in rows:
        if row.get("met") is not False or row.get("reason"):
            continue
        step, name = row.get("step"), str(row["name"])
        found = [
            why
            for key, why in reasons.items()
            if key.partition(": ")[0] == step and key.partition(": ")[2] in name
        ]
        row["reason"] = found[0] if found else "no reason recorded (see the step's output)"


def _note(step: str, why: str, met: bool | None = None) -> dict[str, Any]:
    return {
        "name": f"{step}: {why}",
        "value": None,
        "unit": "",
        "target": "-",
        "reference": "-",
        "met": met,
        "step": step,
        "reason": why if met is False else None,
    }


def _value(row: dict[str, Any]) -> str:
    value = row.get("value")
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        digits = 2 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
        return f"{value:,.{digits}f} {row.get('unit', '')}".strip()
    return f"{value:,.0f} {row.get('unit', '')}".strip()


def table(rows: list[dict[str, Any]], box: dict[str, Any]) -> str:
    verdict = {True: "yes", False: "NO", None: "-"}
    lines = [
        f"donations benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {box['cores']} cores, "
        f"{box['memory_gib']} GiB, load average {box['load_average'][0]} at the start, "
        f"{box['load_average_end'][0]} at the end; a fixed pure-Python workload "
        f"(bench/all.py python_speed_ms) took {box.get('python_speed_ms', '?')} ms of CPU "
        f"at the start, {box.get('python_speed_ms_end', '?')} ms at the end",
        "",
        "| step | measure | measured | target | reference (same run) | met | reason |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.get('step', '-')} | {row['name']} | {_value(row)} | "
            f"{row.get('target') or '-'} | {row.get('reference') or '-'} | "
            f"{verdict[row.get('met')]} | {row.get('reason') or ''} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=os.environ.get("BENCH_ONLY", ",".join(STEPS)))
    parser.add_argument(
        "--step-timeout", type=float, default=float(os.environ.get("BENCH_STEP_TIMEOUT", "1800"))
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    chosen = [
        step
        for name in args.only.split(",")
        if name.strip()
        for step in ALIASES.get(name.strip(), [name.strip()])
    ]
    unknown = [name for name in chosen if name not in STEPS]
    if unknown:
        print(f"error: unknown step {unknown[0]} (known: {', '.join(STEPS)})", file=sys.stderr)
        return 2
    box = machine()
    rows: list[dict[str, Any]] = []
    for name in chosen:
        rows += run_step(name, STEPS[name], args.step_timeout)
    box["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    box["python_speed_ms_end"] = python_speed_ms()
    add_reasons(rows, json.loads(REASONS.read_text()) if REASONS.exists() else {})
    report = table(rows, box)
    print()
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "all.json").write_text(json.dumps({"machine": box, "rows": rows}, indent=2))
    (args.out / "all.md").write_text(report + "\n")
    print(f"\n(also in {args.out / 'all.json'} and {args.out / 'all.md'})")
    return 1 if any(row.get("met") is False for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
