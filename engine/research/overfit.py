"""How likely a sweep's winner is overfit: two figures from the per-day returns of what was tried.

- The deflated Sharpe ratio (Bailey and López de Prado, 2014): the probability that the winner's true
  Sharpe ratio beats the best that ``N`` tries of no skill are expected to show by luck, allowing for
  the skewness and kurtosis of its returns and the number of days behind them.
- The probability of backtest overfitting (Bailey, Borwein, López de Prado and Zhu, 2017) by
  combinatorially symmetric cross-validation: the days are cut into ``S`` blocks; for every way of
  taking half the blocks as "in sample", the best combination there is ranked among all of them on the
  other half; PBO is the share of splits where it lands at or below the median.

Pure numpy and the standard library (``statistics.NormalDist`` for the normal distribution).
"""

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
BLOCKS = 16  # the papers' choice: C(16, 8) = 12,870 splits
SCORES = ("sharpe", "sum")
_NORMAL = NormalDist()
_SPLITS_AT_ONCE = 512  # rows of the split matrices held at a time: memory stays small for 1,000s of combinations


class OverfitError(ValueError):
    """Figures asked of data that cannot give them; the message says why."""


def sharpe(returns: np.ndarray) -> float:
    """Mean over sample standard deviation (``ddof=1``), as ``sharpe_daily``; 0 when it does not vary."""
    r = np.asarray(returns, float)
    std = float(r.std(ddof=1)) if len(r) > 1 else 0.0
    return float(r.mean() / std) if std > 0 else 0.0


def expected_max_sharpe(trials: int, variance: float) -> float:
    """The expected maximum of ``trials`` independent Sharpe ratios of true value 0 whose estimates vary
    across trials with ``variance`` (the paper's SR0); 0 for one trial, which has no luck to deflate."""
    if trials < 1 or variance < 0:
        raise OverfitError(f"expected maximum of {trials} trials with variance {variance}: needs >= 1 and >= 0")
    if trials == 1:
        return 0.0
    return math.sqrt(variance) * ((1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / trials)
                                  + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (trials * math.e)))


@dataclass(frozen=True)
class Deflated:
    probability: float | None  # None: undefined (the reason says why)
    sharpe: float  # the winner's, per day
    benchmark: float  # SR0: the best Sharpe per day the tries give by luck
    trials: int
    days: int
    skewness: float
    kurtosis: float  # not excess: 3 for normal returns
    reason: str = ""

    def verdict(self) -> str:
        """One line a trader can act on."""
        tries = f"{self.trials:,} tr{'y' if self.trials == 1 else 'ies'}"
        if self.probability is None:
            return f"deflated Sharpe undefined: {self.reason}"
        head = f"deflated Sharpe {self.probability:.2f} (Sharpe/day {self.sharpe:.3f} against {self.benchmark:.3f}, " \
               f"the best of {tries} by luck): "
        if self.sharpe <= 0:
            return head + "it lost money over these days: do not trade it"
        if self.probability >= 0.95:
            return head + "skill beyond that luck at 95% confidence: worth paper trading"
        if self.probability >= 0.5:
            return head + "could be that luck: paper trade it before any money"
        return head + "likely that luck: do not trade it"


def psr(sharpe: float, benchmark: float, days: int, skewness: float, kurtosis: float) -> float | None:
    """The probabilistic Sharpe ratio: Φ((SR − SR*) √(T − 1) / √(1 − γ3 SR + (γ4 − 1)/4 SR²)), the
    probability that a true Sharpe ratio beats ``benchmark`` (SR*) given the estimate ``sharpe`` (SR, per
    period) over ``days`` (T) returns of that ``skewness`` (γ3) and ``kurtosis`` (γ4, 3 when normal);
    None when the moments leave the estimate no variance."""
    spread = 1 - skewness * sharpe + (kurtosis - 1) / 4 * sharpe ** 2
    if days < 2 or spread <= 0:
        return None
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(days - 1) / math.sqrt(spread))


def probabilistic_sharpe(returns: np.ndarray, benchmark: float, trials: int = 1) -> Deflated:
    """``psr`` of ``returns`` against ``benchmark``: SR as ``sharpe``, skewness and kurtosis as
    population moments of the returns."""
    r = np.asarray(returns, float)
    days = len(r)
    dev = r - r.mean() if days else r
    m2 = float(np.mean(dev ** 2)) if days else 0.0
    sr = sharpe(r)
    if days < 2 or m2 <= 0:
        return Deflated(None, sr, benchmark, trials, days, 0.0, 0.0,
                        f"the winner's daily P&L does not vary over {days} day(s)")
    skew = float(np.mean(dev ** 3)) / m2 ** 1.5
    kurt = float(np.mean(dev ** 4)) / m2 ** 2
    p = psr(sr, benchmark, days, skew, kurt)
    return Deflated(p, sr, benchmark, trials, days, skew, kurt,
                    "" if p is not None else f"skewness {skew:.2f} and kurtosis {kurt:.2f} leave the Sharpe ratio "
                                             "no variance")


def deflated_sharpe(returns: np.ndarray, trial_sharpes: np.ndarray) -> Deflated:
    """``probabilistic_sharpe`` of the winner's ``returns`` against ``expected_max_sharpe`` of the
    tries, whose Sharpe ratios (each on the same days, the winner's among them) vary as ``trial_sharpes``."""
    srs = np.asarray(trial_sharpes, float)
    if not len(srs):
        raise OverfitError("the deflated Sharpe ratio needs the Sharpe ratios of the tries")
    variance = float(srs.var(ddof=1)) if len(srs) > 1 else 0.0
    return probabilistic_sharpe(returns, expected_max_sharpe(len(srs), variance), len(srs))


@dataclass(frozen=True)
class Overfitting:
    probability: float  # PBO
    logits: np.ndarray  # λ of every split: ln(ω / (1 − ω)), ω the in-sample best's relative rank out of sample
    blocks: int
    combinations: int

    @property
    def splits(self) -> int:
        return len(self.logits)

    def verdict(self) -> str:
        """One line a trader can act on."""
        head = f"PBO {self.probability:.2f} ({self.splits:,} splits of {self.blocks} day-blocks, " \
               f"{self.combinations:,} combinations): "
        if self.probability >= 0.5:
            return head + "likely overfit: the in-sample best does no better than a random pick on other days; " \
                          "do not trade it"
        if self.probability >= 0.2:
            return head + f"some overfit: the in-sample best falls to the bottom half on other days in " \
                          f"{self.probability:.0%} of splits; paper trade it first"
        return head + f"the in-sample best stays in the top half on other days in {1 - self.probability:.0%} " \
                      "of splits: not overfit (whether it makes money is the deflated Sharpe's question)"


def _score(s1: np.ndarray, s2: np.ndarray, n: np.ndarray, score: str) -> np.ndarray:
    """Per combination, from sums of returns (``s1``), of their squares (``s2``) and day counts (``n``)."""
    if score == "sum":
        return s1
    n = n[:, None]
    mean = s1 / n
    ss = s2 - s1 * mean  # squared deviations from the mean, summed
    # Rounding leaves a constant column a tiny spread; such a column does not vary (Sharpe 0).
    flat = ss <= 1e-12 * s2
    ss[flat] = 1.0
    np.sqrt(ss / (n - 1), out=ss)
    np.divide(mean, ss, out=mean)
    mean[flat] = 0.0
    return mean


def _logits(chosen_in: np.ndarray, out: np.ndarray) -> np.ndarray:
    """λ per split: the relative rank ω = rank / (N + 1) out of sample of the in-sample best (ties share
    their average rank), as ln(ω / (1 − ω))."""
    best = np.argmax(chosen_in, axis=1)  # first of equals, as the sweep's ranking
    x = out[np.arange(len(out)), best][:, None]
    rank = (out < x).sum(axis=1) + ((out == x).sum(axis=1) + 1) / 2
    omega = rank / (out.shape[1] + 1)
    return np.log(omega / (1 - omega))


def pbo(returns: np.ndarray, blocks: int = BLOCKS, score: str = "sharpe") -> Overfitting:
    """The probability of backtest overfitting of choosing the best column of ``returns`` (days x
    combinations) by ``score`` (``sharpe`` per day, or ``sum``), by CSCV over ``blocks`` blocks of days
    in time order (as even as the days allow; fewer blocks when there are fewer days)."""
    m = np.asarray(returns, float)
    if m.ndim != 2:
        raise OverfitError(f"PBO needs a days x combinations matrix, not {m.ndim} dimension(s)")
    days, n = m.shape
    if score not in SCORES:
        raise OverfitError(f"PBO score {score!r}: one of {', '.join(SCORES)}")
    if n < 2:
        raise OverfitError(f"PBO needs at least 2 combinations to choose from, not {n}")
    if blocks < 2 or blocks % 2:
        raise OverfitError(f"PBO needs an even number of blocks of at least 2, not {blocks}")
    blocks = min(blocks, days - days % 2)
    if blocks < 4:
        raise OverfitError(f"PBO needs at least 4 days (2 a half), not {days}")
    parts = np.array_split(m, blocks)
    b1 = np.array([p.sum(axis=0) for p in parts])
    b2 = np.array([(p ** 2).sum(axis=0) for p in parts])
    bn = np.array([len(p) for p in parts], float)
    # Every half and its complement are both splits: score each pair once and read it both ways.
    halves = np.array([[b == 0 or b in c for b in range(blocks)]
                       for c in itertools.combinations(range(1, blocks), blocks // 2 - 1)], float)
    t1, t2, tn = b1.sum(axis=0), b2.sum(axis=0), bn.sum()
    lam = []
    for k in range(0, len(halves), _SPLITS_AT_ONCE):
        a = halves[k:k + _SPLITS_AT_ONCE]
        a1, a2, an = a @ b1, a @ b2, a @ bn
        one = _score(a1, a2, an, score)
        other = _score(t1 - a1, t2 - a2, tn - an, score)
        lam += [_logits(one, other), _logits(other, one)]
    logits = np.concatenate(lam)
    return Overfitting(float(np.mean(logits <= 0)), logits, blocks, n)


__all__ = ["BLOCKS", "EULER_GAMMA", "SCORES", "Deflated", "OverfitError", "Overfitting", "deflated_sharpe",
           "expected_max_sharpe", "pbo", "probabilistic_sharpe", "psr", "sharpe"]
