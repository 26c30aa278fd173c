"""Parameter sweeps: every combination of some config settings backtested on the same data, in
parallel on all cores or on a Ray cluster, ranked by a metric, optionally walk-forward.

A task is one config on one stretch of the data (all of it, or a walk-forward train or test window:
whole IST days), run by ``backtest.run`` exactly as ``otrade backtest`` runs it, so every row equals a
single backtest of its parameters on its days. The tick arrays go to each worker once (a process
pool's initializer, a Ray actor's constructor from the object store); a task carries only its config
and tick range.

Walk-forward: the days are cut into windows of ``train`` days followed by ``test`` days, rolling on by
``test`` days (the last test window may be shorter). On each window the best parameters on the
train days (by the metric) are scored on the test days: out of sample beside in sample.

Only combinations that traded enough are ranked (``min_trades`` over all the days, pro rata on a train
window), and a ratio with no losing trade behind it (profit factor) is never best. The winner on all
days comes with how likely it is overfit (``engine.research.overfit``): its deflated Sharpe ratio given
every combination tried, and the probability of backtest overfitting by CSCV over blocks of days.
"""

import csv
import itertools
import math
import os
import random
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from tqdm import tqdm

from config import Config, ConfigError, validate
from config.manager import ConfigManager, _dotted, _parse_value
from engine.core.layout import IST_OFFSET_NS, NS_PER_DAY
from engine.data.ticks import Ticks
from engine.research import backtest, overfit
from engine.strategies import default_catalog

# metric -> True when bigger is better
METRICS = {"net_pnl": True, "sharpe_daily": True, "profit_factor": True, "max_drawdown": False}
COLUMNS = ("ticks", "sessions", "trades", "wins", "win_rate", "gross_pnl", "costs", "net_pnl", "max_drawdown",
           "sharpe_daily", "sharpe_annualised", "profit_factor", "exposure")
OUTPUTS = (".csv", ".parquet")
# Below about 30 trades a ratio is mostly luck: one trade more or less moves a profit factor or a win
# rate by more than most parameter changes do.
MIN_TRADES = 30
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_EPOCH_DAY = date(1970, 1, 1)


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message says why."""


# --- what to sweep ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    path: str  # dotted, as ``/set`` takes it: instruments.0.strategy.fast
    values: tuple[Any, ...]


def parse_param(spec: str) -> Param:
    """``PATH=LOW:HIGH:STEP`` (inclusive), ``PATH=a,b,c`` or ``PATH=value``; values are JSON or plain text."""
    path, sep, text = spec.partition("=")
    if not sep or not path.strip() or not text.strip():
        raise SweepError(f"--param {spec!r}: write PATH=LOW:HIGH:STEP, PATH=a,b,c or PATH=value")
    path = _dotted(path.strip())
    parts = text.split(":")
    if "," not in text and len(parts) == 3 and all(_NUMBER.match(p.strip()) for p in parts):
        return Param(path, _range(path, *(p.strip() for p in parts)))
    return Param(path, tuple(_parse_value(v.strip()) for v in text.split(",")))


def _range(path: str, low: str, high: str, step: str) -> tuple[Any, ...]:
    lo, hi, st = (_parse_value(x) for x in (low, high, step))
    if st <= 0 or hi < lo:
        raise SweepError(f"{path}: range {low}:{high}:{step} is empty (LOW <= HIGH and STEP > 0)")
    if all(isinstance(x, int) for x in (lo, hi, st)):
        return tuple(range(lo, hi + 1, st))
    # Floats on the step's decimals, so 0.1:0.5:0.1 gives 0.3, not 0.30000000000000004.
    decimals = max(len(x.partition(".")[2]) for x in (low, high, step))
    count = math.floor((hi - lo) / st + 1e-9) + 1
    return tuple(round(lo + k * st, decimals) for k in range(count))


def grid(params: Sequence[Param], samples: int | None = None, seed: int = 1) -> list[dict[str, Any]]:
    """Every combination of the values, in order; with ``samples``, a seeded draw of that many of them."""
    sizes = [len(p.values) for p in params]
    total = math.prod(sizes)
    if samples is None or samples >= total:
        picks: Iterator[tuple[Any, ...]] = itertools.product(*(p.values for p in params))
    else:
        def combination(index: int) -> tuple[Any, ...]:
            out = []
            for p, size in zip(reversed(params), reversed(sizes), strict=True):
                index, k = divmod(index, size)
                out.append(p.values[k])
            return tuple(reversed(out))
        picks = map(combination, sorted(random.Random(seed).sample(range(total), samples)))
    return [{p.path: v for p, v in zip(params, combo, strict=True)} for combo in picks]


def configure(base: Config, values: dict[str, Any]) -> Config:
    """``base`` with each dotted path set to its value, validated whole as ``/set`` does (ConfigError)."""
    data = base.model_dump(mode="json")
    for path, value in values.items():
        node, key = ConfigManager._locate(data, path)  # the /set path rules and their errors
        node[key] = value
    return validate(data, default_catalog())


def configs(base: Config, combos: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Config], list[str]]:
    """The combinations the config accepts, their configs, and why the first refused one was refused.

    A value refused in every combination it appears in is a mistake (ConfigError naming the field);
    a combination refused only by a rule across settings (fast must be below slow) is left out.
    """
    kept: list[dict[str, Any]] = []
    out: list[Config] = []
    refused: list[tuple[dict[str, Any], ConfigError]] = []
    for combo in combos:
        try:
            out.append(configure(base, combo))
        except ConfigError as exc:
            refused.append((combo, exc))
        else:
            kept.append(combo)
    accepted = {(path, orjson.dumps(value)) for combo in kept for path, value in combo.items()}
    for combo, exc in refused:
        for path, value in combo.items():
            if (path, orjson.dumps(value)) not in accepted:
                raise ConfigError([f"--param {path}={value!r}: no combination is a valid config", *exc.errors])
    return kept, out, [f"{len(refused)} of {len(combos)} combinations refused, e.g. {refused[0][1].errors[0]}"] \
        if refused else []


# --- where to run it --------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    kind: str  # "all", "train" or "test"
    window: int  # 0 for "all", else 1, 2, ...
    lo: int  # tick indices
    hi: int
    first: date
    last: date
    days: int  # days with data


@dataclass(frozen=True, eq=False)
class Data:
    """What a sweep runs on: ticks in time order and, for candles replayed by the pessimistic rule,
    the replay's partner offsets (``engine.data.candles.Replay.partner``) that ``backtest.run`` takes."""

    ticks: Ticks
    partner: np.ndarray | None = None
    what: str = "ticks"  # said in the output: which data, which candle rule

    def part(self, lo: int, hi: int) -> "Data":
        """Ticks ``lo:hi`` (whole days: a candle's partner offsets never leave its day)."""
        t = self.ticks
        return Data(Ticks(t.ts[lo:hi], t.price[lo:hi], t.volume[lo:hi], t.instr[lo:hi], t.symbols),
                    None if self.partner is None else self.partner[lo:hi], self.what)


def _days(ticks: Ticks) -> tuple[np.ndarray, np.ndarray]:
    """IST day numbers with ticks and the index of each day's first tick (ticks are in time order)."""
    return np.unique((ticks.ts + IST_OFFSET_NS) // NS_PER_DAY, return_index=True)


def _date(day: int) -> date:
    return _EPOCH_DAY + timedelta(days=int(day))


def whole(ticks: Ticks) -> Segment:
    days, _ = _days(ticks)
    if not len(days):
        raise SweepError("the data has no ticks")
    return Segment("all", 0, 0, len(ticks), _date(days[0]), _date(days[-1]), len(days))


def windows(ticks: Ticks, train: int, test: int) -> list[tuple[Segment, Segment]]:
    """(train, test) segments of whole days: ``train`` days, then up to ``test`` days, rolling on by ``test``."""
    days, starts = _days(ticks)
    bounds = np.append(starts, len(ticks))
    if len(days) <= train:
        raise SweepError(f"walk-forward with {train} train days needs more days of data than that; "
                         f"the data has {len(days)}")

    def segment(kind: str, window: int, a: int, b: int) -> Segment:
        return Segment(kind, window, int(bounds[a]), int(bounds[b]), _date(days[a]), _date(days[b - 1]), b - a)

    out = []
    for k, start in enumerate(range(0, len(days) - train, test), start=1):
        mid = start + train
        out.append((segment("train", k, start, mid), segment("test", k, mid, min(mid + test, len(days)))))
    return out


def parse_days(text: str) -> int:
    """``60d`` or ``60``: a number of trading days (days with data)."""
    m = re.fullmatch(r"\s*(\d+)\s*d?\s*", text)
    if m is None or int(m[1]) < 1:
        raise SweepError(f"{text!r} is not a number of days, e.g. 60d")
    return int(m[1])


# --- one task ---------------------------------------------------------------------------------
def metrics(result: backtest.Result) -> dict[str, Any]:
    """The backtest's summary (as ``otrade backtest`` prints it) and the profit factor, flat."""
    row = {k: v for k, v in result.summary().items() if k in COLUMNS}
    net = result.net
    won, lost = float(net[net > 0].sum()), -float(net[net < 0].sum())
    row["profit_factor"] = round(won / lost, 4) if lost else (math.inf if won else 0.0)
    return {k: row[k] for k in COLUMNS}


def daily(result: backtest.Result) -> np.ndarray:
    """Net ₹ per session of ``result.days``: the trades that closed that IST day (as ``sharpe_daily``)."""
    exit_day = (result.ti[:, backtest.TI_EXIT] + IST_OFFSET_NS) // NS_PER_DAY
    k = np.searchsorted(result.days, exit_day)
    on = k < len(result.days)
    on[on] = result.days[k[on]] == exit_day[on]
    return np.bincount(k[on], weights=result.net[on], minlength=len(result.days))


# What a task finds: its row's numbers, and its IST day numbers with the net ₹ of each.
Found = tuple[dict[str, Any], np.ndarray, np.ndarray]


def _found(data: Data, settings: dict[str, Any], lo: int, hi: int) -> Found:
    part = data.part(lo, hi)
    result = backtest.run(validate(settings, default_catalog()), part.ticks, partner=part.partner)
    return metrics(result), result.days, daily(result)


def evaluate(data: Data, settings: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    """One backtest of the config ``settings`` (its JSON data) on ticks ``lo:hi``."""
    return _found(data, settings, lo, hi)[0]


# A task's config travels as JSON data, validated where it runs: a pickled model would tie the
# workers to the exact classes the driver loaded.
Task = tuple[dict[str, Any], int, int]
_worker_data: Data | None = None  # a pool worker's data, set once by its initializer


def _chunk(tasks: int, workers: int) -> int:
    """Tasks sent at a time: few enough that the workers finish together, enough to keep IPC small."""
    return max(1, min(8, tasks // (workers * 8)))


def _init_worker(data: Data) -> None:
    global _worker_data
    _worker_data = data


def _run_task(task: Task) -> Found:
    assert _worker_data is not None
    return _found(_worker_data, *task)


class _Local(AbstractContextManager):
    """This process (one worker) or a process pool whose workers get the data once, at start: inherited
    on fork (Linux), pickled once per worker where processes are spawned."""

    def __init__(self, data: Data, workers: int) -> None:
        self.data, self.workers = data, workers
        self.pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(data,)) if workers > 1 else None

    def map(self, tasks: list[Task]) -> Iterator[Found]:
        if self.pool is None:
            return (_found(self.data, *t) for t in tasks)
        return self.pool.map(_run_task, tasks, chunksize=_chunk(len(tasks), self.workers))

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


class _RayWorker:
    """One per CPU of the cluster; Ray hands it the data from its object store once."""

    def __init__(self, data: Data) -> None:
        # Writable copies: Numba compiles the object store's read-only arrays as another signature.
        t = data.ticks
        self.data = Data(Ticks(t.ts.copy(), t.price.copy(), t.volume.copy(), t.instr.copy(), t.symbols),
                         None if data.partner is None else data.partner.copy(), data.what)

    def run(self, tasks: list[Task]) -> list[Found]:
        return [_found(self.data, *t) for t in tasks]


class _Ray(AbstractContextManager):
    def __init__(self, data: Data, address: str) -> None:
        try:
            import ray
            from ray.util import ActorPool
        except ImportError:
            raise SweepError("--ray needs Ray: pip install 'otrade[ray]'") from None
        self.ray, self.started = ray, not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=address)
            except ConnectionError as exc:
                raise SweepError(f"--ray {address}: {exc}") from None
        stored = ray.put(data)  # once into the object store; every actor reads it from there
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.actors = [ray.remote(num_cpus=1)(_RayWorker).remote(stored) for _ in range(cpus)]
        self.pool = ActorPool(self.actors)

    def map(self, tasks: list[Task]) -> Iterator[Found]:
        size = _chunk(len(tasks), len(self.actors))
        batches = [tasks[k:k + size] for k in range(0, len(tasks), size)]
        return (row for rows in self.pool.map(lambda actor, b: actor.run.remote(b), batches) for row in rows)

    def __exit__(self, *exc: object) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        if self.started:
            self.ray.shutdown()


# --- the sweep --------------------------------------------------------------------------------
def _better(metric: str) -> Callable[[dict[str, Any]], float]:
    sign = -1.0 if METRICS[metric] else 1.0
    return lambda row: sign * row[metric]


def _need(min_trades: int, segment: Segment, days: int) -> int:
    """Trades a combination must make on ``segment`` to be ranked: ``min_trades`` over all ``days``, pro rata."""
    return math.ceil(min_trades * segment.days / days)


def _why_not(row: dict[str, Any], metric: str, need: int) -> str:
    """Why ``row`` may not be ranked; "" when it may."""
    if row["trades"] < need:
        return f"made fewer than {need} trades"
    if not math.isfinite(row[metric]):
        return f"had no losing trade ({metric} undefined)"
    return ""


@dataclass
class SweepResult:
    paths: list[str]  # the swept settings, as given
    metric: str
    # one per (combination, segment): segment, window, days, chosen, values, metrics; on all days also
    # rank (None: not ranked, ``excluded`` says why) and deflated_sharpe; the winner's also pbo and verdict
    rows: list[dict[str, Any]]
    notes: list[str]
    min_trades: int = 0
    tried: int = 0  # combinations backtested
    days: int = 0  # days with data
    pairs: list[tuple[Segment, Segment]] = field(default_factory=list)  # walk-forward (train, test) windows
    deflated: overfit.Deflated | None = None  # the winner's
    overfitting: overfit.Overfitting | None = None
    unmeasured: str = ""  # why ``overfitting`` is None
    oos_daily: list[tuple[int, date, float]] = field(default_factory=list)  # walk-forward: (window, test day, net ₹)

    def ranked(self) -> list[dict[str, Any]]:
        """The whole-data rows that may be ranked, best first (ties in grid order)."""
        return sorted((r for r in self.rows if r["segment"] == "all" and r["rank"] is not None),
                      key=lambda r: r["rank"])

    def excluded(self) -> dict[str, int]:
        """Why whole-data rows were not ranked, and how many each reason kept out."""
        out: dict[str, int] = {}
        for r in self.rows:
            if r["segment"] == "all" and r["excluded"]:
                out[r["excluded"]] = out.get(r["excluded"], 0) + 1
        return out

    def walk_forward(self) -> list[dict[str, Any]]:
        """Every window: the parameters chosen on the train days, out of sample, then in sample. A window
        where no combination traded enough to be ranked chose nothing (None): its test days were not traded."""
        chosen = {(r["segment"], r["window"]): r for r in self.rows if r["chosen"]}
        out = []
        for train_seg, test_seg in self.pairs:
            train, test = chosen.get(("train", train_seg.window)), chosen.get(("test", test_seg.window))
            out.append({
                "window": train_seg.window, "train": f"{train_seg.first}..{train_seg.last}",
                "test": f"{test_seg.first}..{test_seg.last}", **{p: train and train[p] for p in self.paths},
                "out_of_sample": test and test[self.metric],
                "oos_net_per_day": test and round(test["net_pnl"] / max(1, test["sessions"]), 2),
                "oos_trades": test and test["trades"],
                "in_sample": train and train[self.metric],
                "is_net_per_day": train and round(train["net_pnl"] / max(1, train["sessions"]), 2),
            })
        return out

    def out_of_sample(self) -> dict[str, Any]:
        """The test windows traded, taken together, beside their train windows' average, per day."""
        tests = [r for r in self.rows if r["segment"] == "test"]
        trains = [r for r in self.rows if r["segment"] == "train" and r["chosen"]]
        days = sum(r["sessions"] for r in tests)
        return {"windows": len(self.pairs), "traded": len(tests), "days": days,
                "net_pnl": round(sum(r["net_pnl"] for r in tests), 2),
                "oos_net_per_day": round(sum(r["net_pnl"] for r in tests) / max(1, days), 2),
                "is_net_per_day": round(sum(r["net_pnl"] for r in trains) / max(1, sum(r["sessions"] for r in trains)),
                                        2)}

    def untraded(self) -> list[str]:
        """A line per walk-forward window that chose nothing."""
        return [f"window {w['window']} not traded: no combination made {_need(self.min_trades, train, self.days)} "
                f"trades on its train days ({w['train']})"
                for w, (train, _) in zip(self.walk_forward(), self.pairs, strict=True) if w["out_of_sample"] is None]

    def headline(self) -> str:
        """Walk-forward's out-of-sample result in one line."""
        oos = self.out_of_sample()
        skipped = f" ({oos['traded']} of {oos['windows']} windows traded)" if oos["traded"] < oos["windows"] else ""
        return (f"out of sample, {oos['days']} days{skipped}: net ₹{oos['net_pnl']:,.2f} "
                f"(₹{oos['oos_net_per_day']:,.2f} a day); in sample ₹{oos['is_net_per_day']:,.2f} a day")

    def overfit_lines(self) -> list[str]:
        """How likely the best on all days is overfit: each figure with its verdict."""
        if self.deflated is None:
            return ["overfitting not measured: no combination is ranked"]
        pbo = self.overfitting.verdict() if self.overfitting else f"PBO not measured: {self.unmeasured}"
        return [f"how likely the best on all days is overfit, of {self.tried:,} combinations tried:",
                f"  {self.deflated.verdict()}", f"  {pbo}"]

    def exclusion(self) -> str:
        """What the ranking left out, and why."""
        out = self.excluded()
        if not out:
            return ""
        reasons = "; ".join(f"{n:,} {why}" for why, n in out.items())
        if not self.ranked():
            most = max(r["trades"] for r in self.rows if r["segment"] == "all")
            return (f"no combination is ranked ({reasons}; the most trades: {most}): a lower minimum "
                    "(--min-trades) ranks thinner ones")
        return f"not ranked: {sum(out.values()):,} of {self.tried:,} combinations: {reasons}"

    def table(self, top: int = 10) -> str:
        """Walk-forward first (out of sample, every window), how likely the winner is overfit, then the
        best ``top`` combinations on all days (in sample), as text."""
        lines = [*self.notes]
        if windows := self.walk_forward():
            lines += [f"walk-forward by {self.metric}: chosen on each train window, scored on the test days after it",
                      self.headline(), _format(windows, list(windows[0]), self.paths), *self.untraded(), ""]
        lines += [*self.overfit_lines(), ""]
        if ranked := self.ranked()[:top]:
            lines += [f"top {len(ranked)} by {self.metric} on all {self.days} days (in sample: ranked on the days "
                      "it is scored on)", _format(
                          ranked, ["rank", *self.paths, "net_pnl", "sharpe_daily", "profit_factor", "max_drawdown",
                                   "trades", "deflated_sharpe"], self.paths)]
        if exclusion := self.exclusion():
            lines.append(exclusion)
        return "\n".join(lines)

    def write(self, path: Path) -> None:
        """Every row, as CSV or Parquet (by the file's extension)."""
        suffix = path.suffix.lower()
        if suffix not in OUTPUTS:
            raise SweepError(f"{path.name}: write {' or '.join(OUTPUTS)}")
        if suffix == ".parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise SweepError(f"{path.name}: Parquet needs pyarrow (or write .csv)") from None
            pq.write_table(pa.Table.from_pylist(self.rows), path)
        else:
            with open(path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(self.rows[0]))
                writer.writeheader()
                writer.writerows(self.rows)


def run(base: Config, data: Data, combos: list[dict[str, Any]], metric: str = "net_pnl",
        walk: tuple[int, int] | None = None, workers: int | None = None, ray: str | None = None,
        progress: bool = False, min_trades: int = MIN_TRADES) -> SweepResult:
    """Backtest every combination on all the data (and, with ``walk=(train, test)`` days, on every
    train window; then each window's best on its test window); locally or on the Ray at ``ray``.
    Only combinations with ``min_trades`` over all the days (pro rata on a train window) are ranked."""
    if metric not in METRICS:
        raise SweepError(f"unknown metric {metric!r} (one of {', '.join(METRICS)})")
    if not combos:
        raise SweepError("no parameter combinations to run")
    if workers is not None and workers < 1:
        raise SweepError(f"workers must be at least 1, not {workers}")
    if min_trades < 0:
        raise SweepError(f"the minimum of trades must be 0 or more, not {min_trades}")
    kept, cfgs, notes = configs(base, combos)
    everything = whole(data.ticks)
    pairs = windows(data.ticks, *walk) if walk else []
    jobs = [(c, s) for c in range(len(cfgs)) for s in [everything, *(train for train, _ in pairs)]]
    settings = [c.model_dump(mode="json") for c in cfgs]
    # Compiled once, here: forked workers inherit the machine code, others read the cache this writes.
    evaluate(data, settings[0], 0, 1)
    runner = _Ray(data, ray) if ray else _Local(data, workers or os.cpu_count() or 1)
    with runner:
        done = runner.map([(settings[c], s.lo, s.hi) for c, s in jobs])
        found = list(tqdm(done, total=len(jobs), unit="backtest", disable=not progress, leave=False))
        rows = [_row(kept[c], s, r) for (c, s), (r, _, _) in zip(jobs, found, strict=True)]
        for row, (_, s) in zip(rows, jobs, strict=True):
            row["excluded"] = _why_not(row, metric, _need(min_trades, s, everything.days))
        picked, rank = [], _better(metric)
        for train, test in pairs:
            if mine := [j for j, (_, s) in enumerate(jobs) if s == train and not rows[j]["excluded"]]:
                best = min(mine, key=lambda j: rank(rows[j]))
                rows[best]["chosen"] = True
                picked.append((jobs[best][0], test))
        tested = list(runner.map([(settings[c], test.lo, test.hi) for c, test in picked]))
    res = SweepResult(list(kept[0]), metric, rows, [f"data: {data.what}", *notes], min_trades, len(kept),
                      everything.days, pairs)
    for (c, test), (r, days, net) in zip(picked, tested, strict=True):
        rows.append({**_row(kept[c], test, r), "chosen": True})
        res.oos_daily += [(test.window, _date(d), float(x)) for d, x in zip(days.tolist(), net.tolist(), strict=True)]
    _judge(res, [(j, found[j]) for j, (_, s) in enumerate(jobs) if s is everything])
    return res


def _judge(res: SweepResult, alls: list[tuple[int, Found]]) -> None:
    """Rank the whole-data rows that may be ranked and say how likely the winner is overfit: its deflated
    Sharpe ratio given every combination tried, and PBO (CSCV) among the ranked ones."""
    rows = res.rows
    order = sorted((k for k, (j, _) in enumerate(alls) if not rows[j]["excluded"]),
                   key=lambda k: _better(res.metric)(rows[alls[k][0]]))
    for place, k in enumerate(order, start=1):
        rows[alls[k][0]]["rank"] = place
    days = np.unique(np.concatenate([d for _, (_, d, _) in alls]))
    returns = np.zeros((len(days), len(alls)))  # days x combinations: net ₹ a day, 0 on a day not traded
    for k, (_, (_, d, net)) in enumerate(alls):
        returns[np.searchsorted(days, d), k] = net
    sharpes = np.array([overfit.sharpe(returns[:, k]) for k in range(len(alls))])
    luck = overfit.expected_max_sharpe(len(alls), float(sharpes.var(ddof=1)) if len(alls) > 1 else 0.0)
    for k, (j, _) in enumerate(alls):
        p = overfit.probabilistic_sharpe(returns[:, k], luck, len(alls)).probability
        rows[j]["deflated_sharpe"] = None if p is None else round(p, 4)
    if not order:
        return
    res.deflated = overfit.probabilistic_sharpe(returns[:, order[0]], luck, len(alls))
    try:  # in grid order: equals within a split fall to the first, never to the all-days winner
        res.overfitting = overfit.pbo(returns[:, sorted(order)], score="sum" if res.metric == "net_pnl" else "sharpe")
    except overfit.OverfitError as exc:
        res.unmeasured = str(exc)
    winner = rows[alls[order[0]][0]]
    winner["pbo"] = res.overfitting and round(res.overfitting.probability, 4)
    winner["verdict"] = "; ".join(line.strip() for line in res.overfit_lines()[1:])


def _format(rows: list[dict[str, Any]], columns: list[str], exact: Sequence[str]) -> str:
    """A text table; numbers to the paisa, except the ``exact`` columns (parameter values as given); None as –."""
    cells = [["–" if r[c] is None else f"{r[c]:,.2f}" if isinstance(r[c], float) and c not in exact else str(r[c])
              for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[k]) for row in cells)) for k, c in enumerate(columns)]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in [columns, *cells])


def _row(values: dict[str, Any], segment: Segment, found: dict[str, Any]) -> dict[str, Any]:
    return {"segment": segment.kind, "window": segment.window, "first_day": segment.first.isoformat(),
            "last_day": segment.last.isoformat(), "chosen": False, **values, **found,
            "rank": None, "excluded": "", "deflated_sharpe": None, "pbo": None, "verdict": None}


__all__ = ["COLUMNS", "METRICS", "MIN_TRADES", "OUTPUTS", "Data", "Param", "Segment", "SweepError", "SweepResult",
           "configs", "configure", "daily", "evaluate", "grid", "metrics", "parse_days", "parse_param", "run", "whole",
           "windows"]
