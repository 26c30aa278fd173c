"""Shared helpers: percentiles, a printed table, and results written as JSON."""

import json
import platform
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


USER_STRATEGY = "user_cross"


def user_strategy(folder: Path) -> str:
    """The built-in ema_cross's logic as a trader's own file in ``folder`` (made its catalog's);
    returns its name."""
    from engine.strategies import catalog_for

    source = (Path(__file__).resolve().parent.parent / "engine" / "strategies" / "ema_cross.py").read_text()
    (folder / "strategies").mkdir(parents=True, exist_ok=True)
    (folder / "strategies" / f"{USER_STRATEGY}.py").write_text(source.replace('"ema_cross"', f'"{USER_STRATEGY}"'))
    catalog_for(folder / "otrade.json")
    return USER_STRATEGY


def percentiles(ns: np.ndarray) -> dict[str, float]:
    p50, p99, p999 = np.percentile(ns, [50, 99, 99.9])
    return {"p50_us": p50 / 1e3, "p99_us": p99 / 1e3, "p999_us": p999 / 1e3}


def report(name: str, rows: list[dict]) -> None:
    """Print rows (metric, value, goal, ok) as a table and save them to results/<name>.json."""
    width = max(len(r["metric"]) for r in rows)
    print(f"\n{name}")
    for r in rows:
        mark = "" if r.get("ok") is None else ("  ok" if r["ok"] else "  MISSED")
        goal = f"  (goal {r['goal']})" if r.get("goal") else ""
        print(f"  {r['metric']:<{width}}  {r['value']}{goal}{mark}")
    RESULTS.mkdir(exist_ok=True)
    meta = {"python": sys.version.split()[0], "machine": platform.machine(),
            "processor": platform.processor()}
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
