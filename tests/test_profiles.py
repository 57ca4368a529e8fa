"""Performance profiles (Dolan-Moré) on hand-made numbers, and the median time over seeds they use."""

from __future__ import annotations

import math

import pytest

from mnistbench.report.profiles import median_time, performance_profile
from .test_tuning import fake_result, tuned
from mnistbench.workloads.tuning import tuning_trials

INF = math.inf
TIMES = {"A": {"w1": 10.0, "w2": 30.0},   # ratios to the best: 1, 2
         "B": {"w1": 20.0, "w2": 15.0},   # 2, 1
         "C": {"w1": INF, "w2": 60.0}}    # never reached w1; 4 on w2


def profile_at(tau: float) -> dict[str, float]:
    return {t: v[0] for t, v in performance_profile(TIMES, [tau]).items()}


def test_profile_counts_workloads_within_a_factor_tau_of_the_best():
    assert profile_at(1.0) == {"A": 0.5, "B": 0.5, "C": 0.0}
    assert profile_at(1.99) == {"A": 0.5, "B": 0.5, "C": 0.0}
    assert profile_at(2.0) == {"A": 1.0, "B": 1.0, "C": 0.0}
    assert profile_at(3.99)["C"] == 0.0 and profile_at(4.0)["C"] == 0.5


def test_profile_is_non_decreasing_and_ends_at_the_share_of_solved_workloads():
    profile = performance_profile(TIMES)
    for values in profile.values():
        assert all(a <= b for a, b in zip(values, values[1:]))
    assert profile["C"][-1] == 0.5  # tau = 4 reaches its w2 ratio, never its missed w1


def test_a_workload_nobody_solved_counts_as_missed_by_all():
    times = {"A": {"w1": 5.0, "w2": INF}, "B": {"w1": 10.0, "w2": INF}}
    assert {t: v[0] for t, v in performance_profile(times, [4.0]).items()} == {"A": 0.5, "B": 0.5}


def test_a_technique_not_run_on_a_workload_counts_as_missing_it():
    times = {"A": {"w1": 5.0, "w2": 8.0}, "B": {"w1": 5.0}}
    assert {t: v[0] for t, v in performance_profile(times, [1.0]).items()} == {"A": 1.0, "B": 0.5}


def test_median_time_counts_a_missed_target_as_infinitely_slow():
    spec = tuning_trials(tuned())[0].spec
    runs = [fake_result(spec, 0.9, 0.9) for _ in range(3)]
    for r, t in zip(runs, (4.0, 2.0, None)):
        r.time_to_target_s = t
    assert median_time(runs) == pytest.approx(4.0)
    runs[0].time_to_target_s = None
    assert median_time(runs) == INF  # two of three seeds missed
    assert median_time([]) == INF


def _reference_configs():
    from pathlib import Path

    from mnistbench.api import load_results
    from mnistbench.report.profiles import tuned_configs

    store = Path(__file__).parent.parent / "docs" / "reference" / "optimizers-cpu"
    res = load_results("optimizers", store)
    return tuned_configs(res.definition, res.trials), res


def test_profile_band_holds_the_profile_and_shows_what_the_seeds_leave_open():
    """On the committed `optimizers` store, Adam's and SGD + Nesterov's mnist times overlap (3.28-5.50 s against
    2.79-6.49 s): Adam's lead at tau = 1 is not decided by five seeds, and the band must say so."""
    from mnistbench.report.profiles import TAUS, _times, profile_band

    configs, _ = _reference_configs()
    profile = performance_profile(_times(configs, lambda c: c.reruns))
    band = profile_band(configs, resamples=200)
    for technique, rho in profile.items():
        low, high = band[technique]
        assert all(lo - 1e-9 <= r <= hi + 1e-9 for lo, r, hi in zip(low, rho, high)), technique
    first = list(TAUS).index(1.0)
    assert profile["Adam"][first] == 1.0 and band["Adam"][0][first] < 1.0  # fastest on both, but not surely


def test_no_profile_across_mixed_environments(tmp_path):
    from mnistbench.report.analysis import mixed_environments_allowed
    from mnistbench.report.profiles import tuning_section

    configs, res = _reference_configs()
    trials = list(res.trials)
    moved = next(r for c in configs for r in c.reruns)
    moved.environment = {**moved.environment, "torch_threads": 1}  # one rerun with another thread count
    section = tuning_section(res.definition, trials, tmp_path)
    assert "No performance profile" in section.method and "threads" in section.method
    assert not any(f.name == "performance-profile" for f in section.figures)
    with mixed_environments_allowed():
        assert any(f.name == "performance-profile" for f in tuning_section(res.definition, trials, tmp_path).figures)
