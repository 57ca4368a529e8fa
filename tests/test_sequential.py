"""Seeds until decided (`run --until-decided --max-seeds N`): the looks keep the family-wise error, stop a
comparison once decided, give seeds only to configurations still in an open one, and resume from the store."""

from __future__ import annotations

import math

import numpy as np

from mnistbench import api
from mnistbench.report.sequential import looks, replay, spent

from .test_experiments import assert_one_line_error, cli, write_experiment
from .test_report import ADAM, SGD, make_result


def _null_study(rng, n: int) -> list:
    """Two configurations drawn from one distribution: any claim is a false one."""
    out = []
    for fields in (SGD, ADAM):
        for seed in range(n):
            t = float(np.exp(rng.normal(1.5, 0.3)))
            out.append(make_result(seed, final=float(0.985 + rng.normal(0, 0.002)), time_to_target=t,
                                   model="seed-simple", **fields))
    return out


def test_looks_spend_the_error_in_proportion_to_the_seeds():
    assert looks(3, 8, 1) == [3, 4, 5, 6, 7, 8] and looks(3, 8, 2) == [3, 5, 7, 8]
    shares = [spent(n, 8) - spent(p, 8) for p, n in zip([0, 3, 4, 5, 6, 7], [3, 4, 5, 6, 7, 8])]
    assert math.isclose(sum(shares), 0.05) and all(s > 0 for s in shares)


def test_sequential_family_wise_error_stays_at_five_percent_by_simulation():
    """Null studies run to 8 seeds in looks from 3: a claim at any look is a false one. Testing every look at the
    full 5% instead claims in about 10% of these studies (it fails this test)."""
    rng = np.random.default_rng(5)
    reps, any_claim = 300, 0
    for _ in range(reps):
        record = replay(_null_study(rng, 8), start=3, max_seeds=8)
        any_claim += bool(record.claimed)
    assert any_claim / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)


def test_a_decided_comparison_stops_and_only_open_ones_get_seeds():
    # Time: every Adam seed far sooner (decided at the first look); accuracy: a coin toss (stays open).
    rng = np.random.default_rng(0)
    results = []
    for seed in range(3):
        results.append(make_result(seed, final=0.985 + rng.normal(0, 0.002), time_to_target=10.0 + seed * 0.1,
                                   model="seed-simple", **SGD))
        results.append(make_result(seed, final=0.985 + rng.normal(0, 0.002), time_to_target=2.0 + seed * 0.05,
                                   model="seed-simple", **ADAM))
    record = replay(results, start=3, max_seeds=6)
    assert [key[3] for key in record.claimed] == ["time_to_target"]  # claimed at the first look ...
    assert record.next_seeds == 4  # ... the accuracy comparison is open: a fourth seed for both sides
    assert record.next_configs == {r.spec.config_key() for r in results}
    stop = next(s for key, s in record.stops.items() if key[3] == "time_to_target")
    assert stop.seeds == 3 and stop.why.startswith("claimed at 3 seeds a side")


def test_until_decided_end_to_end_resumes_and_reports_its_stopping_record(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, name="seq", seeds=2, configs=2)
    results = tmp_path / "r"
    first = api.run(str(path), results_dir=results, max_seeds=3)
    seeds = sorted({(t.spec.optimizer, t.spec.seed) for t in first.trials})
    assert {s for _, s in seeds} <= {0, 1, 2} and first.run_summary.ran >= 4
    again = api.run(str(path), results_dir=results, max_seeds=3)
    assert again.run_summary.ran == 0  # the replay reaches the same looks from the store: nothing to add
    md = api.write_report("seq", results, tmp_path / "report").markdown.read_text()
    assert "## Seeds until decided" in md and "Seeds added until decided" in md


def test_until_decided_needs_max_seeds_above_the_first_look(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, name="seq", seeds=2, configs=2)
    proc = cli("run", path, "--until-decided", "--max-seeds", "2", "--results", tmp_path / "r")
    assert_one_line_error(proc, "--max-seeds 2", "must be above the 2 seeds of the first look")
    proc = cli("run", path, "--max-seeds", "4", "--results", tmp_path / "r")
    assert_one_line_error(proc, "--until-decided and --max-seeds go together")
    assert not (tmp_path / "r").exists()
