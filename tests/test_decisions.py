"""Effects, tests and the family's procedure against independent implementations (SciPy, statsmodels,
enumeration, simulation), and the conclusions of the committed `seed` reference store."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import ttest_ind as sm_ttest_ind

from mnistbench.errors import ConfigError
from mnistbench.report.analysis import summarize
from mnistbench.report.comparison import Comparison, compare
from mnistbench.report.decisions import conclusions, decide
from mnistbench.report.estimates import probability_of_improvement
from mnistbench.report.questions import FACTORS, Question, questions
from mnistbench.report.significance import (censored_lognormal, min_p_rank, seeds_to_decide, tarone, welch,
                                            welch_log)
from mnistbench.run.experiments import load_experiment
from mnistbench.run.experiments.schema import Experiment, parse_experiment

from .test_report import ADAM, SGD, group

REFERENCE = Path(__file__).parent.parent / "docs" / "reference" / "seed-cpu"


# --- The tests against independent implementations --------------------------------------------------------

def test_welch_on_log_times_agrees_with_statsmodels():
    a, b = [21.0, 17.5, 25.1], [55.0, 57.9, 56.3]
    t, p, _ = sm_ttest_ind(np.log(a), np.log(b), usevar="unequal")
    assert welch_log(a, b) == pytest.approx((t, p))
    assert welch_log(a, b) != pytest.approx(welch(a, b))  # not the test on seconds


def test_censored_fit_without_censoring_is_the_pooled_t_test_on_logs():
    a, b = [20.0, 18.0, 25.0, 19.5], [55.0, 57.0, 56.5]
    fit = censored_lognormal(a, [True] * 4, b, [True] * 3)
    res = stats.ttest_ind(np.log(a), np.log(b))  # equal variances: the model's common scale
    low, high = np.exp(res.confidence_interval())
    assert fit.p == pytest.approx(res.pvalue, rel=1e-5)
    assert (fit.low, fit.high) == pytest.approx((low, high), rel=1e-5)
    assert fit.ratio == pytest.approx(math.exp(np.log(a).mean() - np.log(b).mean()), rel=1e-6)


def test_censored_fit_agrees_with_scipys_censored_data():
    # At the fitted shift, the rest of the model is one censored normal sample: SciPy's fit of the pooled, shifted
    # log times must land on the same scale and location.
    a, ra = [20.0, 18.0, 40.0, 22.0], [True, True, False, True]  # 40 s: trained that long without reaching
    b, rb = [55.0, 57.0, 56.5, 60.0], [True, True, True, False]
    fit = censored_lognormal(a, ra, b, rb)
    shifted = np.concatenate([np.log(a) - math.log(fit.ratio), np.log(b)])
    reached = np.asarray(ra + rb)
    data = stats.CensoredData(uncensored=shifted[reached], right=shifted[~reached])
    mu, sigma = stats.norm.fit(data)
    assert sigma == pytest.approx(fit.sigma, rel=1e-3)
    assert mu == pytest.approx(np.log(b)[np.asarray(rb)].mean(), abs=0.2)  # censoring pulls it up, not far


def test_censored_fit_keeps_its_level_by_simulation():
    """Same distribution on both sides, censored where a budget ends: at most ~5% of p-values below 0.05. The
    uncalibrated chi-square reading of the same statistic rejects about 10% here (it fails this test)."""
    rng = np.random.default_rng(7)
    rejected = tried = 0
    while tried < 120:
        ta, tb = np.exp(rng.normal(0, 0.5, 4)), np.exp(rng.normal(0, 0.5, 4))
        budget = math.exp(0.4)
        ra, rb = ta <= budget, tb <= budget
        fit = censored_lognormal(np.minimum(ta, budget), ra, np.minimum(tb, budget), rb)
        if fit is None or (ra.all() and rb.all()):
            continue
        tried += 1
        rejected += fit.p < 0.05
    assert rejected / tried <= 0.07


def test_probability_of_improvement_interval_agrees_with_a_hand_bootstrap():
    a, b = [4.1, 3.9, 5.2, 4.4, 6.0, 4.0], [4.6, 5.1, 4.9, 6.3, 5.5, 4.2]
    got = probability_of_improvement(a, b, lower_is_better=True)
    pairs = np.asarray(a)[:, None] < np.asarray(b)[None, :]
    assert got.estimate == pytest.approx(pairs.mean())
    rng = np.random.default_rng(123)
    draws = []
    for _ in range(4000):  # resample seeds within each group, as scipy.stats.bootstrap does
        xa, xb = rng.choice(a, len(a)), rng.choice(b, len(b))
        draws.append(((xa[:, None] < xb[None, :]) + 0.5 * (xa[:, None] == xb[None, :])).mean())
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])), abs=0.04)
    never = probability_of_improvement([4.0, math.inf], [math.inf, math.inf], lower_is_better=True)
    assert never.estimate == pytest.approx(0.75)  # a reached time beats a miss; two misses tie


@pytest.mark.parametrize("na,nb", [(2, 2), (3, 3), (4, 4), (5, 5), (3, 5), (6, 6)])
def test_smallest_rank_p_by_enumeration(na, nb):
    pooled = list(range(na + nb))
    sums = [sum(c) for c in itertools.combinations(pooled, na)]
    extreme = min(sums)  # every value of a below every value of b
    smallest = min(1.0, 2 * sum(s <= extreme for s in sums) / len(sums))
    assert min_p_rank(na, nb) == pytest.approx(smallest)


def test_tarone_matches_its_definition_by_enumeration():
    rng = np.random.default_rng(3)
    choices = [0.0, min_p_rank(3, 3), min_p_rank(4, 4), min_p_rank(5, 5), min_p_rank(6, 6), 1.0]
    for _ in range(300):
        min_ps = list(rng.choice(choices, rng.integers(1, 12)))
        # The definition: K is the least k with #{min p <= alpha / k} <= k; the family is those tests.
        k = next(k for k in range(1, len(min_ps) + 1) if sum(p <= 0.05 / k for p in min_ps) <= k)
        assert tarone(min_ps) == [p <= 0.05 / k for p in min_ps]
    # The case: 14 rank tests at 5 seeds a side (min p 0.0079) beside 14 continuous tests: the rank
    # tests cannot pass 0.05 / 14, so they leave the family and stop diluting the others.
    assert tarone([min_p_rank(5, 5)] * 14 + [0.0] * 14) == [False] * 14 + [True] * 14


def test_seeds_to_decide_agrees_with_statsmodels_power():
    for effect, alpha in ((1.0, 0.05), (0.5, 0.05), (2.0, 0.0125), (0.8, 0.01)):
        expected = math.ceil(TTestIndPower().solve_power(effect_size=effect, alpha=alpha, power=0.8))
        assert seeds_to_decide(effect, alpha) == max(2, expected)
    assert seeds_to_decide(0.0, 0.05) is None and seeds_to_decide(None, 0.05) is None


# --- The family's procedure -----------------------------------------------------------------------------

def _stub(p: float, label: str, min_p: float = 0.0) -> Comparison:
    from mnistbench.report.analysis import Stat

    return Comparison("time_to_target", "time to 97%", label, "B", Stat(()), Stat(()), 3, 3, None, None, None,
                      "Welch's t on log times", 0.0, p, f"{label} sentence.", min_p=min_p, standardized=1.0)


def _questions(ps_by_factor: dict[str, list[float]]) -> list[Question]:
    return [Question(f, f, None, None, "", [_stub(p, f"{f}{i}") for i, p in enumerate(ps)])
            for f, ps in ps_by_factor.items()]


def test_gatekeeping_gives_the_first_question_the_full_level():
    qs = _questions({"optimizer": [0.011, 0.02], "model": [0.001], "schedule": [0.3]})
    ordered = decide(qs, order=["optimizer", "model", "schedule"])
    assert [ordered[c].verdict for q in qs for c in q.comparisons] == ["claimed", "claimed", "claimed", "undecided"]
    # All at once, Holm over 4 tests: 0.001 x 4 passes, 0.011 x 3 = 0.033 passes, 0.02 x 2 = 0.04 passes too ...
    flat = decide(qs)
    assert [flat[c].verdict for q in qs for c in q.comparisons] == ["claimed", "claimed", "claimed", "undecided"]
    # ... but with the first question open, nothing after it is claimed, however small its p.
    qs = _questions({"optimizer": [0.011, 0.4], "model": [0.0001], "schedule": [0.3]})
    ordered = decide(qs, order=["optimizer", "model", "schedule"])
    verdicts = [ordered[c].verdict for q in qs for c in q.comparisons]
    assert verdicts == ["claimed", "undecided", "indication", "undecided"]
    model = qs[1].comparisons[0]
    assert "not tested: the optimizer question before it stayed open" in ordered[model].why
    said = conclusions(qs, [], ordered)
    assert said[0] == "Claimed: optimizer0 sentence." and not any(s.startswith("Claimed: model") for s in said)


def test_tarone_leaves_out_tests_that_cannot_succeed_and_says_what_they_need():
    qs = [Question("optimizer", "optimizer", None, None, "",
                   [_stub(0.1, "rank", min_p=min_p_rank(3, 3)), _stub(0.02, "welch")])]
    d = decide(qs)
    rank, welch_ = qs[0].comparisons
    assert d[rank].verdict == "too few seeds" and d[rank].seeds_needed == 4  # 2/C(8,4) = 0.029 < 0.05
    assert "cannot reach p < 0.05 at n = 3 each" in d[rank].why
    assert d[welch_].verdict == "claimed"  # alone in the family: not diluted by a test that could never pass
    assert "Tarone's rule left out 1 test" in d.procedure


@pytest.mark.parametrize("order", [(), ("optimizer", "model", "schedule")])
def test_family_wise_error_stays_at_five_percent_by_simulation(order):
    """Ten null comparisons, three seeds a side, log-normal times, the report's test on each: the chance of any
    claim is at most 5% (within simulation error). Claiming every p < 0.05 alone gives about 40% here."""
    rng = np.random.default_rng(11)
    sizes = {"optimizer": 4, "model": 4, "schedule": 2}
    reps, any_claim = 1500, 0
    # Welch's t on log times of every simulated comparison at once (what welch_log computes one at a time).
    p_all = stats.ttest_ind(rng.normal(0, 0.3, (reps, 10, 3)), rng.normal(0, 0.3, (reps, 10, 3)), axis=-1,
                            equal_var=False).pvalue
    for row in p_all:
        ps, start = {}, 0
        for f, k in sizes.items():
            ps[f], start = list(row[start:start + k]), start + k
        qs = _questions(ps)
        d = decide(qs, order=order)
        any_claim += any(d[c].verdict == "claimed" for q in qs for c in q.comparisons)
    rate = any_claim / reps
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)


def test_question_order_is_validated_and_names_the_report_factors():
    from typing import get_args

    assert set(get_args(Experiment.model_fields["questions"].annotation.__args__[0])) == set(FACTORS)
    body = 'name = "x"\n[[config]]\nlabel = "a"\nfields = {}\n'
    with pytest.raises(ConfigError, match="questions"):
        parse_experiment('questions = ["optimiser"]\n' + body, "x.toml")
    with pytest.raises(ConfigError, match="names a question twice"):
        parse_experiment('questions = ["model", "model"]\n' + body, "x.toml")
    assert load_experiment("seed").questions == ["optimizer", "model", "schedule"]


# --- On real data: the committed seed store --------------------------------------------------------------

def test_reference_seed_store_claims_the_adam_sgd_time_ratio():
    """The 3-seed CPU reference: every Adam seed reaches 97% before every SGD seed. The rank test could not say
    so below p = 0.1; Welch on log times, given the optimizer question's full level, claims it."""
    from mnistbench.api import load_results

    res = load_results(load_experiment("seed"), REFERENCE)
    qs = questions(res.summaries)
    said = conclusions(qs, [], decide(qs, order=load_experiment("seed").questions))
    assert said[0].startswith("Claimed: SimpleCNN + Adam reached 97% 2.69x sooner than SimpleCNN + SGD "
                              "(95% CI 1.68x–4.30x")
    assert sum(s.startswith("Claimed:") for s in said) == 1  # nothing else holds at 3 seeds


def test_a_claim_needs_every_seed_accounted_for():
    # Adam fast on two seeds, never on the third; SGD steady: the censored fit keeps the miss, and no claim.
    adam = group([4.0, 4.1, None], [0.98] * 3, model="seed-simple", **ADAM)
    sgd = group([5.0, 5.1, 5.2], [0.98] * 3, model="seed-simple", **SGD)
    (q,) = questions(summarize(adam + sgd))
    d = decide([q])
    assert not d.claimed()
    time = q.comparisons[0]
    assert time.test == "censored log-normal fit" and time.effect.contains(1.0)
