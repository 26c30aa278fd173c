"""``otrade strategy new NAME``: a commented strategy file to start from, and a test for it.

The test runs as a plain script (``python test_NAME.py``) as well as under pytest: the first install
(``pip install -e .``) has no pytest, and the project's pytest settings want pytest-xdist (``-n 2``),
so a script is what works for everyone who can run ``otrade``.
"""

from pathlib import Path

from engine.strategies import BUILTIN

STRATEGY = '''"""__NAME__: long when the close crosses above its EMA, short (with allow_short) when it crosses below.

Made by `otrade strategy new __NAME__`. Run it by naming it in the config:
    "strategy": {"kind": "__NAME__", "timeframe": 5, "length": 20, "allow_short": false}
then `otrade config check CONFIG` (it compiles this file and says what is wrong, with the line), and
`otrade backtest --config CONFIG --ticks FILE`. Brackets, risk limits, the square-off and costs are
the engine's: this file only says when to be in and out.
"""

from engine.core.indicators import ema  # also: sma rsi atr supertrend bollinger macd vwap donchian opening_range
from engine.strategies.api import CLOSE, EXIT, LONG, NAN, NONE, SHORT, Param, Strategy

strategy = Strategy(
    "__NAME__",  # the file's name: the config's "kind"
    about="long when the close crosses above its EMA, short when it crosses below",
    # Each parameter: its default (an int, float or bool: its type), its range, what it means. The
    # config may set it ("length": 30); a value out of range is refused, naming the field.
    params={
        "length": Param(20, low=2, high=500, about="bars of the EMA"),
        "exit_below": Param(True, about="leave a long when the close falls back under the EMA"),
    },
    # Bars of this many minutes, aligned to 09:15 ("tick" decides on every tick). The config's
    # "timeframe" overrides it.
    timeframe=5,
    # The indicators, from the parameters. The engine updates them with every closed bar, before
    # decide() runs, and carries them across sessions (reset_each_session=True starts them daily).
    indicators=lambda p: {"ema": ema(p.length)},
    # decide()'s own slots, kept from one bar to the next (the session's last bar too, at pos 0).
    memory={"close": NAN, "ema": NAN},
    # Answers count once every indicator is ready and this many bars were seen.
    warmup=lambda p: p.length + 1,
)

# Where things sit in the row decide() gets: constants, so Numba compiles them in.
EMA = strategy.slot("ema")  # strategy.slot("bb", "upper") for an indicator with several outputs
PREV_CLOSE, PREV_EMA = strategy.mem("close"), strategy.mem("ema")
EXIT_BELOW = strategy.param("exit_below")


@strategy.decision
def decide(x, pos):
    """Called on every closed bar. ``x``: the bar (x[OPEN], x[HIGH], x[LOW], x[CLOSE], x[VOLUME]),
    the parameters, the indicators and the memory, by slot; ``pos``: +1 long, -1 short, 0 flat.
    Returns NONE, LONG, SHORT or EXIT. LONG while short only leaves the short (the next LONG enters);
    SHORT enters only with allow_short. Plain arithmetic on numbers only: it is compiled."""
    close, average = x[CLOSE], x[EMA]
    prev_close, prev_average = x[PREV_CLOSE], x[PREV_EMA]
    x[PREV_CLOSE] = close  # remembered for the next bar
    x[PREV_EMA] = average
    if prev_close <= prev_average and close > average:
        return LONG
    if prev_close >= prev_average and close < average:
        return SHORT if pos <= 0.0 else (EXIT if x[EXIT_BELOW] == 1.0 else NONE)
    return NONE
'''

TEST = '''"""__NAME__'s decisions, and a day of the backtest: `python strategies/test___NAME__.py` (no pytest
needed; `pytest strategies/test___NAME__.py` runs the same tests where pytest is installed)."""

import sys
import traceback
from pathlib import Path

from config import validate
from engine.data.synthetic import generate
from engine.research import backtest
from engine.strategies import Catalog, load_file
from engine.strategies.api import CLOSE, LONG, NONE, SHORT

HERE = Path(__file__).parent
strategy = load_file(HERE / "__NAME__.py")


def row(prev_close: float, prev_ema: float, close: float, ema: float):
    """A fresh row (default parameters) whose last bar closed at (prev_close, prev_ema) and whose
    bar now closes at (close, ema)."""
    x, _ = strategy.row(strategy.defaults)
    x[strategy.mem("close")], x[strategy.mem("ema")] = prev_close, prev_ema
    x[CLOSE], x[strategy.slot("ema")] = close, ema
    return x


def test_a_close_crossing_above_the_ema_goes_long():
    assert strategy.decide(row(99.0, 100.0, 101.0, 100.0), 0.0) == LONG


def test_a_close_crossing_below_the_ema_goes_short_from_flat():
    assert strategy.decide(row(101.0, 100.0, 99.0, 100.0), 0.0) == SHORT


def test_a_close_staying_above_the_ema_does_nothing():
    assert strategy.decide(row(101.0, 100.0, 102.0, 100.5), 1.0) == NONE


def test_it_compiles_and_trades_on_a_generated_day():
    cfg = validate({"instruments": [{"symbol": "NSE:INFY", "tick_size": 0.1, "quantity": 1,
                                     "strategy": {"kind": "__NAME__", "timeframe": 1, "length": 5}}],
                    "risk": {"max_trades_per_day": 100}}, strategies=Catalog([HERE]))
    assert backtest.run(cfg, generate(1, 1, ["NSE:INFY"], tick_sizes=[0.1])).summary()["trades"] > 0


if __name__ == "__main__":  # run as a script: each test_ function above, as pytest would
    failed = []
    for name, test in list(globals().items()):
        if name.startswith("test_") and callable(test):
            try:
                test()
                print(f"ok      {name}")
            except Exception:
                failed.append(name)
                print(f"FAILED  {name}")
                traceback.print_exc()
    print(f"{len(failed)} failed: {', '.join(failed)}" if failed else "all passed")
    sys.exit(1 if failed else 0)
'''


def write(name: str, folder: Path) -> tuple[Path, Path]:
    """``folder/name.py`` and ``folder/test_name.py``; ValueError if the name cannot be a strategy's
    or a file is already there."""
    if not name.isidentifier() or name != name.lower() or name.startswith(("_", "test_")):
        raise ValueError(f"{name!r}: a strategy's name is lower case letters, digits and _ (a Python name)")
    if name in BUILTIN:
        raise ValueError(f"{name!r} is a built-in strategy's name; choose another")
    files = folder / f"{name}.py", folder / f"test_{name}.py"
    for path in files:
        if path.exists():
            raise ValueError(f"{path} exists; not overwritten")
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in zip(files, (STRATEGY, TEST), strict=True):
        path.write_text(text.replace("__NAME__", name))
    return files
