"""The statistics against independent implementations (statsmodels, SciPy) on hand-made cases: n = 1, zero
spread, ties, all-censored groups; and the rules a referee would check: no p without spread, non-reaching
seeds ranked last, confounds named, post-hoc picks exploratory, no test data in training decisions."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttest_ind as sm_ttest_ind

from mnistbench import make_spec
from mnistbench.core.models import MODELS
from mnistbench.errors import ConfigError
from mnistbench.report.analysis import summarize
from mnistbench.report.comparison import compare
from mnistbench.report.decisions import conclusions, decide, family
from mnistbench.report.questions import batch_studies, questions
from mnistbench.report.render import verdict
from mnistbench.report.significance import holm, holm_adjusted, mann_whitney, welch

from .test_report import ADAM, SGD, group, make_result

# --- Holm against statsmodels -------------------------------------------------------------------------------

HOLM_CASES = [
    [0.01, 0.04, 0.03],
    [0.001, 0.02],
    [0.03, 0.6],
    [0.049],
    [0.01, 0.01, 0.01, 0.2],  # ties
    [0.012, 0.012, 0.012, 0.012],  # ties just under alpha / 4
    [1.0, 1.0],
    [0.001, 0.002, 0.003, 0.004, 0.005, 0.9, 0.011, 0.0099],
]


@pytest.mark.parametrize("ps", HOLM_CASES)
def test_holm_agrees_with_statsmodels(ps):
    reject, adjusted, _, _ = multipletests(ps, alpha=0.05, method="holm")
    assert holm(ps) == list(reject)
    assert holm_adjusted(ps) == pytest.approx(list(adjusted))


def test_holm_at_exactly_alpha_is_not_significant():
    # statsmodels rejects at p <= alpha / k; the report's rule everywhere is p < 0.05.
    assert holm([0.05]) == [False] and holm([0.0125] * 4) == [False] * 4
    assert holm_adjusted([0.0125] * 4) == pytest.approx(list(multipletests([0.0125] * 4, method="holm")[1]))


def test_holm_agrees_with_statsmodels_on_random_families():
    seed = 20261128
    rng = np.random.default_rng(seed)
    for _ in range(10):  # statsmodels' Holm runs a full garbage collection per call: slow beside torch
        ps = list(rng.choice([rng.uniform(0, 0.06), rng.uniform(0, 1)], size=rng.integers(1, 12)))
        reject, adjusted, _, _ = multipletests(ps, alpha=0.05, method="holm")
        assert holm(ps) == list(reject), f"seed {seed}: {ps}"
        assert holm_adjusted(ps) == pytest.approx(list(adjusted)), f"seed {seed}: {ps}"


# --- Welch against statsmodels and SciPy --------------------------------------------------------------------

WELCH_CASES = [
    ([0.98, 0.99, 0.985], [0.97, 0.975, 0.972]),
    ([4.0, 4.2, 3.9, 4.1, 4.3], [9.8, 9.5, 10.1, 9.9, 9.6]),
    ([1.0, 1.0, 1.0], [0.5, 0.7]),  # one group without spread: the other's variance carries the test
    ([1.0, 2.0], [1.5, 2.5, 3.5, 10.0]),  # unequal sizes and variances
    ([5.0, 5.0, 6.0, 6.0], [5.0, 6.0, 5.0, 6.0]),  # ties, equal means: t = 0
]


@pytest.mark.parametrize("a, b", WELCH_CASES)
def test_welch_agrees_with_statsmodels_and_scipy(a, b):
    t, p = welch(a, b)
    sm_t, sm_p, _ = sm_ttest_ind(a, b, usevar="unequal")
    assert (t, p) == pytest.approx((sm_t, sm_p))
    sp = stats.ttest_ind(a, b, equal_var=False)
    assert (t, p) == pytest.approx((sp.statistic, sp.pvalue))


def test_zero_spread_is_no_test_not_p_zero():
    # SciPy answers p = 0 here (t = inf); identical values are no evidence of anything.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert stats.ttest_ind([0.99] * 3, [0.98] * 3, equal_var=False).pvalue < 1e-20  # rounding, not data
    assert welch([0.99] * 3, [0.98] * 3) is None
    c = compare(group([5, 5, 5], [0.99] * 3, **ADAM), group([5, 5, 5], [0.98] * 3, **SGD), "accuracy", "A", "B")
    assert c.p is None and not c.significant and c.test == ""
    assert c.sentence.startswith("No spread in either group, so no test")
    assert "A: 99.00% in all 3 runs" in c.sentence


def test_zero_spread_never_reaches_the_conclusions():
    # Two seeds a side with identical accuracies: before, p = 0 went through Holm as 'significant'.
    results = group([4.0, 4.1], [0.99, 0.99], model="seed-simple", **SGD)
    results += group([4.0, 4.1], [0.98, 0.98], model="seed-simple", **ADAM)
    (q,) = questions(summarize(results))
    time, accuracy = q.comparisons
    assert accuracy.p is None and not accuracy.significant
    assert not any("accuracy" in s for s in conclusions([q], [], decide([q])))


def test_nearly_identical_values_keep_scipys_warning():
    # The warning that says p is unreliable must reach the user, not be silenced.
    a, b = [1.0, 1.0, 1.0 + 1e-15], [1.0, 1.0, 1.0 + 2e-15]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats.ttest_ind(a, b, equal_var=False)
    assert any("unreliable" in str(w.message) for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        welch(a, b)
    assert any("unreliable" in str(w.message) for w in caught)


def test_single_runs_are_not_tested():
    c = compare(group([4.0], [0.99], **ADAM), group([5.0], [0.98], **SGD), "accuracy", "A", "B")
    assert c.p is None and c.sentence.startswith("A single run each: no test possible")
    c = compare(group([4.0], [0.99], **ADAM), group([5.0, 6.0], [0.98, 0.97], **SGD), "time_to_target", "A", "B")
    assert c.p is None and c.sentence.startswith("Too few runs for a test")
    with pytest.raises(ValueError):
        welch([1.0], [1.0, 2.0])


# --- Mann-Whitney against SciPy -----------------------------------------------------------------------------

MW_NO_TIES = [
    ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]),
    ([4.0, 4.2, 3.9, 4.1, 4.3], [9.8, 9.5, 10.1, 9.9, 9.6]),
    ([1.0, 5.0, 3.0, 8.0], [2.0, 4.0, 6.0]),
    ([2.5], [1.0, 3.0, 4.0]),  # n = 1 on one side
    ([1.0, 9.0], [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
]


@pytest.mark.parametrize("a, b", MW_NO_TIES)
def test_mann_whitney_agrees_with_scipy_exact(a, b):
    u, p = mann_whitney(a, b)
    ref = stats.mannwhitneyu(a, b, alternative="two-sided", method="exact")
    assert (u, p) == pytest.approx((ref.statistic, ref.pvalue))


def _permutation_p(a, b) -> float:
    """SciPy's exact permutation test of the U statistic: every split of the pooled values."""
    res = stats.permutation_test((a, b), lambda x, y: stats.mannwhitneyu(x, y).statistic,
                                 permutation_type="independent", alternative="two-sided", n_resamples=math.inf)
    return res.pvalue


MW_TIES = [
    ([4.0, 4.4, math.inf], [5.0, 5.2, 5.4]),  # one seed of A never reached: ranked last
    ([4.0, math.inf, math.inf], [5.0, 5.2, 5.4]),
    ([4.0, 4.0, 5.0], [4.0, 5.0, 5.0, 6.0]),  # ordinary ties
    ([math.inf, math.inf, math.inf], [5.0, 5.2]),  # A never reached the target
    ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]),  # zero spread in each group, different values
    ([3.0, math.inf, 2.0, math.inf, 1.0], [math.inf, 4.0, 5.0, math.inf, math.inf]),
]


@pytest.mark.parametrize("a, b", MW_TIES)
def test_mann_whitney_with_ties_and_censoring_agrees_with_scipy_permutation(a, b):
    u, p = mann_whitney(a, b)
    assert u == pytest.approx(stats.mannwhitneyu(a, b).statistic)
    assert p == pytest.approx(_permutation_p(a, b))


def test_mann_whitney_by_enumeration_on_random_tied_samples():
    """Every split enumerated by hand, on random small samples drawn with many ties (seed logged)."""
    seed = 14
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n1, n2 = rng.integers(1, 6, size=2)
        pooled = rng.choice([1.0, 2.0, 3.0, math.inf], size=n1 + n2)
        if len(set(pooled)) == 1:
            continue
        a, b = list(pooled[:n1]), list(pooled[n1:])
        ranks = stats.rankdata(pooled)
        observed = ranks[:n1].sum()
        sums = [ranks[list(c)].sum() for c in itertools.combinations(range(n1 + n2), n1)]
        lo = sum(s <= observed + 1e-9 for s in sums) / len(sums)
        hi = sum(s >= observed - 1e-9 for s in sums) / len(sums)
        assert mann_whitney(a, b)[1] == pytest.approx(min(1.0, 2 * min(lo, hi))), f"seed {seed}: {a} {b}"


def test_all_equal_values_are_no_test():
    assert mann_whitney([math.inf] * 3, [math.inf] * 2) is None
    assert mann_whitney([2.0, 2.0], [2.0]) is None


# --- Censoring: a seed that never reached the target counts -------------------------------------------------

def test_two_of_three_seeds_fast_is_not_faster_than_three_of_three():
    # Before: A's two reaching seeds (4.0, 4.1 s) against B's 5.0-5.2 s gave Welch p < 0.001, "A faster".
    # The seed that ran its whole budget (12 s) without reaching the target is censored there, not dropped.
    a = group([4.0, 4.1, None], [0.98] * 3, **ADAM)
    b = group([5.0, 5.1, 5.2], [0.98] * 3, **SGD)
    c = compare(a, b, "time_to_target", "A", "B")
    assert c.test == "censored log-normal fit" and not c.significant
    assert c.effect.contains(1.0)  # the interval leaves the direction open
    rank_p = _permutation_p([4.0, 4.1, math.inf], [5.0, 5.1, 5.2])
    assert c.robustness == f"exact rank test p = {rank_p:.2g}"  # the rank test printed beside the fit
    assert "4.05 s ± 0.07 (2 of 3 seeds reached it)" in c.sentence
    assert c.difference is None and c.hedges_g is None  # a mean over the reaching seeds would flatter A


def test_a_group_that_never_reached_the_target_loses_the_rank_test():
    fast = group([4.0, 4.1, 4.2, 4.3], [0.98] * 4, **ADAM)
    never = group([None] * 4, [0.96] * 4, **SGD)
    c = compare(never, fast, "time_to_target", "SGD", "Adam")
    assert c.p == pytest.approx(2 / math.comb(8, 4)) and c.significant
    assert c.test == "Mann-Whitney rank test" and c.min_p == pytest.approx(2 / math.comb(8, 4))
    assert c.sentence.startswith("Adam reached 97% sooner than SGD: 4.15 s ± 0.13 (4 of 4 seeds reached it) "
                                 "against none of 4 seeds reached it (every Adam seed sooner than every SGD seed")


def test_all_censored_groups_are_no_test():
    c = compare(group([None] * 3, [0.9] * 3, **ADAM), group([None] * 2, [0.9] * 2, **SGD), "time_to_target")
    assert c.p is None and c.sentence == "No test possible: neither A nor B reached 97% (0 of 3 and 0 of 2 seeds)."


def test_diverged_seeds_count_as_not_reaching_and_failed_ones_are_left_out():
    a = group([4.0, 4.1], [0.98] * 2, **ADAM)
    a.append(make_result(7, final=0.1, time_to_target=None, status="diverged", **ADAM))
    failed = make_result(8, final=0.1, time_to_target=None, status="failed", **ADAM)
    b = group([5.0, 5.1, 5.2], [0.98] * 3, **SGD)
    c = compare(a + [failed], b, "time_to_target", "A", "B")
    assert (c.a_total, c.b_total) == (3, 3)
    # A diverged seed has no time at which it stopped short: not censored in a fit, ranked slowest instead.
    assert c.test == "Mann-Whitney rank test"
    assert c.p == pytest.approx(_permutation_p([4.0, 4.1, math.inf], [5.0, 5.1, 5.2]))


def test_batch_size_ranking_counts_missing_seeds():
    # Batch 64 is quicker on the seeds that got there, but only 1 of 3 did.
    rows = group([2.0, None, None], [0.97, 0.96, 0.96], model="seed-bn", batch_size=64, **ADAM)
    rows += group([3.0, 3.1, 3.2], [0.98] * 3, model="seed-bn", batch_size=256, **ADAM)
    (study,) = batch_studies(summarize(rows))
    assert study.sentence.startswith("Batch size 256 reached 97% fastest (3.10 s ± 0.10, 3 of 3 seeds)")
    assert "counts as slower" in study.sentence


# --- Confounds named, post-hoc picks exploratory ------------------------------------------------------------

def ablation_results():
    out = []
    for i, model in enumerate(["seed-simple", "seed-bn-only", "seed-dropout", "seed-bn"]):
        for opt in (SGD, ADAM):
            out += group([5.0 - i, 5.1 - i, 5.2 - i], [0.98, 0.981, 0.982], model=model, **opt)
    return out


def test_ablation_separates_batchnorm_from_dropout():
    qs = [q for q in questions(summarize(ablation_results())) if q.factor == "model"]
    pairs = {(q.a.spec.model, q.b.spec.model, q.heading) for q in qs}
    expected = {("seed-simple", "seed-bn-only", "Batch normalization"), ("seed-simple", "seed-dropout", "Dropout"),
                ("seed-dropout", "seed-bn", "Batch normalization"), ("seed-bn-only", "seed-bn", "Dropout"),
                ("seed-simple", "seed-bn", "BatchNorm + dropout (the notebook's OptimizedCNN)")}
    assert pairs == expected and len(qs) == 10  # each pair with SGD and with Adam
    assert all(q.note == "" for q in qs)  # only the model differs


def test_models_pair_by_family_not_by_name():
    # Pairing comes from the registry's family and `adds`, not from a shared name prefix.
    assert MODELS.get("seed-bn").family == MODELS.get("seed-simple").family == "seed"
    assert MODELS.get("summary-bn").adds == {"batchnorm"} and MODELS.get("summary").family == "summary"
    results = group([5.0, 5.1], [0.98, 0.981], model="seed-simple", **ADAM)
    results += group([4.0, 4.1], [0.98, 0.981], model="summary-bn", **ADAM)  # another family: no question
    results += group([4.0, 4.1], [0.98, 0.981], model="compact", **ADAM)  # no family partner
    assert [q for q in questions(summarize(results)) if q.factor == "model"] == []


def test_every_other_field_that_differs_is_named():
    sgd = group([5.0, 5.1], [0.98, 0.981], model="seed-simple", **SGD)
    sched = group([5.0, 5.1], [0.98, 0.981], model="seed-simple", optimizer="sgd", lr=0.02, schedule="step")
    by = {q.factor: q for q in questions(summarize(sgd + sched))}
    assert by["schedule"].note == "lr differs too: 0.01 vs 0.02"


def test_batch_size_pick_is_exploratory_and_outside_holms_family(tmp_path):
    rows = []
    for bs, t in ((64, 4.0), (256, 2.0), (512, 3.0)):
        rows += group([t, t + 0.1, t + 0.2, t + 0.05, t + 0.15], [0.99] * 5, model="seed-bn", batch_size=bs, **ADAM)
    summaries = summarize(rows)
    (study,) = batch_studies(summaries)
    c = study.comparison
    assert c.exploratory and c.significant  # p = 0.0079 on its own ...
    assert family([], [study]) == []  # ... but not in the family Holm corrects
    decisions = decide([], [study])
    said = conclusions([], [study], decisions)
    assert not any(c.sentence in s for s in said) and any("exploratory" in s for s in said)
    assert verdict(c, decisions) == "exploratory"
    from mnistbench.report.render import write_report
    md = write_report("bs", rows, tmp_path).markdown.read_text()
    assert "- *exploratory:* " in md and "*claimed:*" not in md


# --- No test data in training decisions ---------------------------------------------------------------------

def test_plateau_refuses_to_step_on_the_test_set():
    with pytest.raises(ConfigError, match="steps on the evaluation accuracy.*eval_on = \"val\" and val_size > 0") as e:
        make_spec(schedule="plateau")
    assert "\n" not in e.value.one_line()
    with pytest.raises(ConfigError, match="steps on the evaluation accuracy"):
        make_spec(schedule="plateau", val_size=1000)  # a validation split held out, but evaluating on test
    assert make_spec(schedule="plateau", eval_on="val", val_size=1000).schedule == "plateau"
    assert make_spec(schedule="step").eval_on == "test"  # schedules that ignore the evaluation are free to
