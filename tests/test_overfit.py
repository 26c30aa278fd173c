"""The overfitting figures: the deflated Sharpe ratio (Bailey and López de Prado, 2014) and PBO by CSCV
(Bailey, Borwein, López de Prado and Zhu), each read against the papers' formulas written out here."""

import itertools
import math
import statistics

import numpy as np
import pytest

from engine.research import overfit

PHI = statistics.NormalDist()
GAMMA = 0.5772156649015329  # Euler-Mascheroni


def test_the_expected_maximum_and_the_deflated_sharpe_match_the_papers_worked_example():
    # The DSR paper's example: 100 trials whose annualised Sharpe ratios vary by 1/2, the winner's 2.5
    # annualised over 1,250 daily returns of skewness -3 and kurtosis 10: SR0 = 0.1132, DSR = 0.9004.
    benchmark = overfit.expected_max_sharpe(100, 0.5 / 250)
    assert benchmark == pytest.approx(0.1132, abs=1e-4)
    assert overfit.psr(2.5 / math.sqrt(250), benchmark, 1250, -3.0, 10.0) == pytest.approx(0.9004, abs=1e-4)


def test_the_deflated_sharpe_of_returns_is_the_formula_worked_by_hand():
    returns = [120.0, -80.0, 45.0, 300.0, -150.0, 10.0, 95.0, -20.0, 60.0, -310.0, 180.0, 75.0]
    tries = [0.35, -0.1, 0.05, 0.2, -0.4, 0.12, 0.0]
    t = len(returns)
    mu = sum(returns) / t
    sr = mu / statistics.stdev(returns)
    m2, m3, m4 = (sum((x - mu) ** k for x in returns) / t for k in (2, 3, 4))
    skew, kurt = m3 / m2 ** 1.5, m4 / m2 ** 2
    n = len(tries)
    sr0 = math.sqrt(statistics.variance(tries)) * ((1 - GAMMA) * PHI.inv_cdf(1 - 1 / n)
                                                   + GAMMA * PHI.inv_cdf(1 - 1 / (n * math.e)))
    expected = PHI.cdf((sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr ** 2))
    found = overfit.deflated_sharpe(np.array(returns), np.array(tries))
    assert (found.sharpe, found.benchmark, found.skewness, found.kurtosis) == pytest.approx((sr, sr0, skew, kurt))
    assert found.probability == pytest.approx(expected, rel=1e-9)
    assert (found.trials, found.days) == (7, 12)


def test_one_try_has_no_luck_to_deflate():
    assert overfit.expected_max_sharpe(1, 0.3) == 0.0


def test_a_winner_whose_pnl_never_varies_has_no_deflated_sharpe_and_says_why():
    found = overfit.deflated_sharpe(np.zeros(20), np.array([0.0, 0.1]))
    assert found.probability is None
    assert found.verdict() == "deflated Sharpe undefined: the winner's daily P&L does not vary over 20 day(s)"


def test_the_deflated_sharpe_verdicts_are_what_a_trader_does():
    def verdict(p: float) -> str:
        return overfit.Deflated(p, 0.2, 0.1, 500, 250, 0.0, 3.0).verdict()
    assert verdict(0.97).endswith("skill beyond that luck at 95% confidence: worth paper trading")
    assert verdict(0.7).endswith("could be that luck: paper trade it before any money")
    assert verdict(0.2).endswith("likely that luck: do not trade it")
    assert "the best of 500 tries by luck" in verdict(0.2)
    lost = overfit.Deflated(0.0, -0.1, 0.1, 500, 250, 0.0, 3.0).verdict()
    assert lost.endswith("it lost money over these days: do not trade it")


def cscv_by_hand(m: np.ndarray, blocks: int) -> list[float]:
    """CSCV as the paper lays it out, one split at a time: the logit of the in-sample best's relative
    rank out of sample, Sharpe ratios per column of the joined blocks."""
    parts = np.array_split(m, blocks)
    logits = []
    for train in itertools.combinations(range(blocks), blocks // 2):
        j = np.concatenate([parts[b] for b in train])
        jbar = np.concatenate([parts[b] for b in range(blocks) if b not in train])
        r = [statistics.mean(c) / statistics.stdev(c) for c in j.T]
        rbar = [statistics.mean(c) / statistics.stdev(c) for c in jbar.T]
        best = r.index(max(r))
        rank = 1 + sum(x < rbar[best] for x in rbar)  # continuous data: no ties
        omega = rank / (len(rbar) + 1)
        logits.append(math.log(omega / (1 - omega)))
    return logits


def test_pbo_is_the_share_of_splits_cscv_by_hand_puts_at_or_below_the_median():
    m = np.random.default_rng(5).normal(0.0, 1.0, (36, 7)) + np.linspace(-0.2, 0.2, 7)
    logits = cscv_by_hand(m, 6)
    found = overfit.pbo(m, blocks=6)
    assert sorted(found.logits) == pytest.approx(sorted(logits))
    assert found.probability == sum(x <= 0 for x in logits) / len(logits)
    assert (found.splits, found.blocks, found.combinations) == (20, 6, 7)


def test_pure_noise_gives_a_pbo_near_one_half():
    rng = np.random.default_rng(11)
    found = [overfit.pbo(rng.normal(0.0, 1.0, (160, 40))).probability for _ in range(40)]
    assert float(np.mean(found)) == pytest.approx(0.5, abs=0.1)  # one matrix's PBO varies by about 0.17


def test_one_combination_truly_better_on_every_block_gives_a_pbo_of_zero():
    rng = np.random.default_rng(3)
    m = rng.normal(0.0, 1.0, (160, 30))
    m[:, 4] = 1.0 + 0.1 * rng.normal(0.0, 1.0, 160)  # a Sharpe ratio near 10 a day, every block
    found = overfit.pbo(m)
    assert found.probability == 0.0
    assert found.logits == pytest.approx(np.full(found.splits, math.log(30)))  # top rank out of sample, every split
    assert found.verdict().endswith("the in-sample best stays in the top half on other days in 100% of splits: "
                                    "not overfit (whether it makes money is the deflated Sharpe's question)")


def test_a_winner_in_sample_that_is_worst_out_of_sample_gives_a_pbo_of_one():
    # Every column nets 0 over all the days, so what it made on one half it lost on the other: ranked by
    # net P&L, the in-sample best is the out-of-sample worst in every split.
    m = np.random.default_rng(8).normal(0.0, 1.0, (96, 12))
    m -= m.mean(axis=0)
    found = overfit.pbo(m, score="sum")
    assert found.probability == 1.0
    assert found.logits == pytest.approx(np.full(found.splits, math.log(1 / 12)))
    assert found.verdict().endswith("likely overfit: the in-sample best does no better than a random pick on other "
                                    "days; do not trade it")


def test_fewer_days_than_blocks_take_one_block_a_day():
    found = overfit.pbo(np.random.default_rng(1).normal(0.0, 1.0, (11, 3)))
    assert (found.blocks, found.splits) == (10, math.comb(10, 5))


@pytest.mark.parametrize(("shape", "kw", "message"), [
    ((3, 5), {}, "PBO needs at least 4 days"),
    ((40, 1), {}, "PBO needs at least 2 combinations to choose from, not 1"),
    ((40, 5), {"blocks": 7}, "PBO needs an even number of blocks of at least 2, not 7"),
    ((40, 5), {"score": "sortino"}, "PBO score 'sortino': one of sharpe, sum"),
])
def test_pbo_refuses_what_it_cannot_measure_saying_why(shape, kw, message):
    with pytest.raises(overfit.OverfitError, match=message):
        overfit.pbo(np.zeros(shape), **kw)
