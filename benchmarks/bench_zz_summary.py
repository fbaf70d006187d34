"""The summary of every benchmark result: reports/bench/*.json -> reports/bench/SUMMARY.md, one table row per file
with its key figures. Named to sort last, so `make bench` runs it after the benchmarks it summarises.

Key figures come from a list per result name (the first matching prefix below); a result not listed shows its
first top-level numbers and flags. A figure a file does not have is left out.

    .venv/bin/python benchmarks/bench_zz_summary.py
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import BENCH, ROOT

# result-name prefix -> (label, dotted path) of its key figures; "*" in a path: every element of a list
KEY_FIGURES: dict[str, list[tuple[str, str]]] = {
    "hardening": [("requests", "load.requests"), ("failures", "load.failures"), ("p50 ms", "load.p50_ms"),
                  ("p99 ms", "load.p99_ms"), ("req/s", "load.throughput_rps"), ("connections", "concurrency"),
                  ("pipeline runs during load", "load.pipeline_runs_completed_during_load"),
                  ("faults", "faults.*.fault"), ("kept serving", "faults.*.api.kept_serving")],
    "api": [("concurrency", "concurrency"), ("predict p50 ms", "endpoints.predict.p50_ms"),
            ("predict p99 ms", "endpoints.predict.p99_ms"), ("predict req/s", "endpoints.predict.throughput_rps"),
            ("features p50 ms", "endpoints.predict_features.p50_ms"), ("upload 10k rows s", "upload_10k_rows.median_s"),
            ("goals", "goals")],
    "orchestration": [("command", "command"), ("wall s", "wall_s"), ("pipeline s", "pipeline_s"),
                      ("overhead share", "overhead_share")],
    "features": [("rows", "rows_in"), ("coins", "coins"), ("median s", "seconds.ours.median"),
                 ("vs TA-Lib same set", "ratio_like_for_like")],
    "gate": [("permutations", "permutations"), ("false promotions", "false_promotions"),
             ("point-rule promotions", "point_rule_promotions"), ("verdict on real labels", "real.verdict")],
    "intervals": [("coverage 80", "metrics.coverage_80"), ("coverage 95", "metrics.coverage_95"),
                  ("skill 80", "metrics.interval_skill_80"), ("skill 95", "metrics.interval_skill_95"),
                  ("sigma MZ R2", "sigma_mz.r2")],
    "monitoring_alarms": [("checks", "checks"), ("alarms", "alarms"), ("per 91 days", "alarms_per_91_days"),
                          ("goal met", "goal_met")],
    "volatility": [("24 h champion", "horizons.24.champion"), ("24 h best baseline", "horizons.24.best_baseline"),
                   ("168 h champion", "horizons.168.champion")],
    "scaling": [("days", "days"), ("partial", "partial"), ("total s", "total_s"), ("verdicts", "verdicts")],
}
GENERIC = 6  # top-level numbers and flags shown for a result without a list


def pick(data: Any, path: str) -> Any:
    "The value at a dotted path (`*` maps over a list); None when absent."
    head, _, rest = path.partition(".")
    if head == "*":
        if not isinstance(data, list):
            return None
        got = [pick(x, rest) if rest else x for x in data]
        return [g for g in got if g is not None] or None
    if not isinstance(data, dict) or head not in data:
        return None
    return pick(data[head], rest) if rest else data[head]


def show(value: Any) -> str:
    "A figure as table text: rounded numbers, lists joined, dicts as key=value, at most 160 characters."
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, list):
        text = ", ".join(show(v) for v in value)
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={show(v)}" for k, v in value.items())
    else:
        text = str(value)
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."


def figures(name: str, data: Any) -> list[tuple[str, str]]:
    "(label, text) of a result's key figures."
    spec = next((v for k, v in KEY_FIGURES.items() if name == k or name.startswith(k + "-")), None)
    if spec is None:
        if not isinstance(data, dict):
            return [("entries", str(len(data)))] if isinstance(data, list) else []
        spec = [(k, k) for k, v in data.items() if isinstance(v, int | float | bool)][:GENERIC]
    return [(label, show(v)) for label, path in spec if (v := pick(data, path)) is not None]


def summary(folder: Path = BENCH) -> str:
    "The markdown table of every JSON result in `folder`."
    lines = ["# Benchmark summary", "",
             f"Every result in `{folder.relative_to(ROOT)}` (written by `make bench`, "
             f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}). Figures were measured on a 2-core machine shared "
             "with other work: timings vary from run to run; each file holds the machine's load.", "",
             "| result | measured | key figures |", "|---|---|---|"]
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            lines.append(f"| {path.stem} | - | unreadable JSON: {show(str(exc))} |")
            continue
        when = data.get("measured_at") if isinstance(data, dict) else None
        when = str(when)[:10] if when else datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d")
        text = "; ".join(f"{label}: {value}" for label, value in figures(path.stem, data)) or "-"
        lines.append(f"| [{path.stem}]({path.name}) | {when} | {text} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    out = BENCH / "SUMMARY.md"
    out.write_text(summary())
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
