"""Analysis, figures and report on synthetic TrialResults (made-up curves, no training)."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from scipy import stats

from mnistbench.report.analysis import ThroughputRow, summarize
from mnistbench.report.comparison import compare
from mnistbench.report.decisions import conclusions, decide
from mnistbench.report.significance import holm
from mnistbench.api import Results
from mnistbench.report.questions import batch_studies, questions
from mnistbench.errors import ResultsMissing
from mnistbench.core.inference import InferenceResult
from mnistbench.report.render import write_report
from mnistbench.core.result import CurvePoint, EpochPoint, TrialResult
from mnistbench.core.spec import TrialSpec

CHROMIUM = Path("/usr/bin/chromium")
ENV = {"cpu": "Test CPU 3000", "logical_cores": 2, "usable_cores": 2, "torch_threads": 2, "torch": "2.13.0",
       "device": "cpu", "mnistbench_git": "abc123def456", "os": "Linux", "python": "3.11"}


def make_result(seed: int = 0, final: float = 0.985, time_to_target: float | None = 5.0, status: str | None = None,
                epochs: int = 3, epoch_seconds: float = 4.0, environment: dict | None = None,
                **spec_fields) -> TrialResult:
    """A TrialResult whose curve rises towards `final` and crosses the target near `time_to_target`."""
    spec = TrialSpec(seed=seed, epochs=epochs, **spec_fields)
    start = 0.80
    if time_to_target is not None and final > spec.target:
        rate = math.log((final - start) / (final - spec.target)) / time_to_target
    else:
        rate = 1.0 / epoch_seconds
    curve, history = [], []
    for i in range(1, 10 * epochs + 1):
        t = i * epoch_seconds / 10
        acc = final - (final - start) * math.exp(-rate * t)
        loss = 0.05 + 0.5 * math.exp(-rate * t)
        curve.append(CurvePoint(step=i * 47, epoch=i / 10, train_seconds=t, wall_seconds=1.2 * t, train_loss=loss,
                                eval_accuracy=acc, eval_loss=loss, lr=spec.lr))
        if i % 10 == 0:
            history.append(EpochPoint(epoch=i / 10, train_loss=loss, eval_accuracy=acc, eval_loss=loss,
                                      epoch_seconds=epoch_seconds))
    reached = time_to_target is not None
    return TrialResult(
        spec=spec, status=status or ("reached" if reached else "budget"), final_accuracy=final, final_loss=0.05,
        time_to_target_s=time_to_target, steps_to_target=47 if reached else None,
        epochs_to_target=time_to_target / epoch_seconds if reached else None, steps=470 * epochs,
        train_seconds=epoch_seconds * epochs, eval_seconds=0.5 * epochs, wall_seconds=epoch_seconds * epochs + 1,
        load_seconds=0.3, compile_seconds=0.0, device="cpu", curve=curve, epochs=history,
        environment=dict(environment or ENV))


def group(times, finals, **spec_fields) -> list[TrialResult]:
    return [make_result(seed, final=f, time_to_target=t, **spec_fields)
            for seed, (t, f) in enumerate(zip(times, finals))]


SGD = dict(optimizer="sgd", lr=0.01)
ADAM = dict(optimizer="adam", lr=0.001)


def test_summary_numbers_by_hand():
    results = group([2.0, 4.0, None], [0.98, 0.99, 1.00], **SGD)
    (s,) = summarize(results)
    assert s.n == 3 and s.reached == 2 and s.seeds == [0, 1, 2]
    assert s.accuracy.mean == pytest.approx(0.99)
    assert s.accuracy.std == pytest.approx(0.01)
    assert s.accuracy.ci95 == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-5)  # t(0.975, df=2)
    assert s.time_to_target.values == (2.0, 4.0)  # only the seeds that reached the target
    assert s.time_to_target.mean == pytest.approx(3.0)
    assert s.time_to_target.std == pytest.approx(math.sqrt(2))
    assert s.epochs_to_target.mean == pytest.approx(0.75)
    assert s.status_counts == {"reached": 2, "budget": 1}
    assert s.label == "seed-simple · SGD lr 0.01 · batch 128"


def test_throughput_is_averaged_per_configuration_and_batch_size():
    def measured(batch_size: int, pass_s: float) -> InferenceResult:
        return InferenceResult(batch_size, 2, 1000, [pass_s, pass_s], "cpu", "fp32")

    seeds = [("bn", measured(100, 0.5)), ("bn", measured(100, 0.25)), ("bn", measured(1, 2.0)), ("plain", measured(100, 1.0))]
    rows = {(r.label, r.batch_size): r for r in Results("x", [], seeds, 0).throughput}
    assert set(rows) == {("bn", 100), ("bn", 1), ("plain", 100)}  # batch sizes are never mixed
    bn = rows["bn", 100]
    assert (bn.seeds, bn.images_per_second) == (2, 3000.0)  # mean of 2,000 and 4,000 images/s
    assert bn.images_per_second_std == pytest.approx(math.sqrt(2) * 1000)
    assert bn.images_per_second_text == "3,000 ± 1,414"
    assert rows["plain", 100].images_per_second_text == "1,000"  # one model: no spread


def test_labels_diverged_runs_and_grouping():
    results = group([3.0, 3.2], [0.99, 0.99], **ADAM) + group([5.0], [0.98], **SGD)
    results.append(make_result(5, final=0.1, time_to_target=None, status="diverged", **SGD))
    key = results[0].spec.config_key()
    adam, sgd = summarize(results, {key: "Adam baseline"})
    assert adam.label == "Adam baseline" and adam.n == 2
    assert sgd.status_counts == {"reached": 1, "diverged": 1}
    assert sgd.accuracy.values == (0.98,)  # a diverged run has no final accuracy to average


def test_sentence_follows_the_data():
    fast = group([4.0, 4.2, 3.9, 4.1, 4.3], [0.99] * 5, **ADAM)
    slow = group([9.8, 9.5, 10.1, 9.9, 9.6], [0.985] * 5, **SGD)
    c = compare(fast, slow, "time_to_target", "Adam", "SGD")
    assert c.significant and c.test == "Welch's t on log times"
    # The effect leads: the ratio of geometric means and its interval, from an independent computation.
    logs = [math.log(t) for t in (4.0, 4.2, 3.9, 4.1, 4.3)], [math.log(t) for t in (9.8, 9.5, 10.1, 9.9, 9.6)]
    ratio = math.exp(sum(logs[1]) / 5 - sum(logs[0]) / 5)
    high, low = (math.exp(-x) for x in stats.ttest_ind(*logs, equal_var=False).confidence_interval())
    assert c.sentence == (f"Adam reached 97% {ratio:.2f}x sooner than SGD (95% CI {low:.2f}x–{high:.2f}x; "
                          "4.10 s ± 0.16, IQM 4.10 s against 9.78 s ± 0.24, IQM 9.77 s; n = 5 each; every Adam "
                          "seed sooner than every SGD seed; Welch's t on log times, p < 0.001).")
    assert c.difference < 0 and c.hedges_g < 0 and abs(c.hedges_g) < abs(c.cohens_d)
    flipped = compare(group([9.8, 9.5, 10.1], [0.99] * 3, **ADAM), group([4.0, 4.2, 3.9], [0.99] * 3, **SGD),
                      "time_to_target", "Adam", "SGD")
    # Three seeds a side: the rank test could not go below p = 0.1; Welch on log times can.
    assert flipped.significant and flipped.sentence.startswith("SGD reached 97% 2.4")
    assert "x sooner than Adam" in flipped.sentence


def test_equal_distributions_and_too_few_runs():
    a = group([5, 5, 5], [0.989, 0.990, 0.991], **ADAM)
    b = group([5, 5, 5], [0.991, 0.989, 0.990], **SGD)
    same = compare(a, b, "accuracy", "A", "B")
    assert not same.significant
    assert same.sentence.startswith("A and B ended level in final test accuracy (95% CI −0.23 to +0.23")
    assert same.effect.contains(0.0) and same.improvement.estimate == 0.5
    single = compare(a[:1], b[:1], "accuracy", "A", "B")
    assert single.p is None and single.sentence.startswith("A single run each: no test possible")
    never = compare(a, group([None, None], [0.96, 0.96], **SGD), "time_to_target", "A", "B")
    # A seed that never reached the target is slower than any that did: testable, not dropped.
    assert never.p == pytest.approx(0.2)  # 2 of the 10 splits of 5 ranks put both misses in B
    assert never.test == "Mann-Whitney rank test" and "against none of 2 seeds reached it" in never.sentence


def test_holm_keeps_only_what_survives_the_family():
    assert holm([0.01, 0.04, 0.03]) == [True, False, False]  # 0.01 < 0.05/3; then 0.03 > 0.05/2 stops
    assert holm([0.001, 0.02]) == [True, True]
    assert holm([0.03, 0.6]) == [False, False]  # 0.03 alone would pass, but not as one of two
    assert holm([]) == []


def test_conclusions_do_not_claim_what_fails_the_correction(tmp_path):
    sgd = group([4.0, 4.4, 4.8], [0.990, 0.991, 0.992], model="seed-simple", **SGD)
    adam = group([4.2, 4.6, 5.0], [0.986, 0.988, 0.989], model="seed-simple", **ADAM)
    (q,) = questions(summarize(sgd + adam))
    time, accuracy = q.comparisons
    assert accuracy.significant and 0.025 < accuracy.p < 0.05 and not time.significant
    first, second, undecided, procedure = conclusions([q], [], decide([q]))
    assert undecided.startswith("Undecided, with the seeds a side") and "time to 97%" in undecided
    assert first.startswith("Nothing is claimed")
    assert second.startswith("Indication, not claimed (p = 0.042 alone, not kept by Holm's correction over the "
                             "family's 2 tests)")
    assert procedure.startswith("Family-wise error at 5%: Holm's correction over the 2 tests")
    md = write_report("x", sgd + adam, tmp_path).markdown.read_text()
    assert "- *indication:* " in md and "*claimed:*" not in md  # the badge agrees with the claim
    # With a clear time gap as well (5 seeds a side), its p passes at 0.05/2 and lets the accuracy through.
    sgd = group([4.0, 4.4, 4.8, 4.2, 4.6], [0.990, 0.991, 0.992, 0.990, 0.991], model="seed-simple", **SGD)
    adam = group([5.0, 5.4, 5.8, 5.2, 5.6], [0.986, 0.988, 0.989, 0.987, 0.988], model="seed-simple", **ADAM)
    (q,) = questions(summarize(sgd + adam))
    assert [c.p < 0.05 for c in q.comparisons] == [True, True]
    assert conclusions([q], [], decide([q]))[:2] == [f"Claimed: {c.sentence}" for c in q.comparisons]


def notebook_results() -> list[TrialResult]:
    """The seed notebook's grid, with made-up numbers: Adam faster than SGD, BatchNorm faster still."""
    rs = group([9.8, 9.4, 10.2], [0.985, 0.986, 0.984], model="seed-simple", **SGD)
    rs += group([4.1, 4.4, 3.9], [0.991, 0.992, 0.990], model="seed-simple", **ADAM)
    rs += group([2.9, 3.1, 3.0], [0.993, 0.992, 0.994], model="seed-bn", **ADAM)
    rs += group([2.9, 3.2, 3.0], [0.994, 0.993, 0.994], model="seed-bn", optimizer="adam", lr=0.002,
                schedule="step")
    for bs, t in ((64, 4.0), (256, 2.6), (512, 3.4)):
        rs += group([t, t + 0.2, t - 0.1], [0.991, 0.990, 0.989], model="seed-bn", batch_size=bs, epochs=5, **ADAM)
    return rs


def test_notebook_questions_are_found():
    summaries = summarize(notebook_results())
    qs = questions(summaries)
    by_factor = {q.factor: q for q in qs}
    assert set(by_factor) == {"optimizer", "model", "schedule"}
    assert (by_factor["optimizer"].a.spec.optimizer, by_factor["optimizer"].b.spec.optimizer) == ("sgd", "adam")
    assert by_factor["model"].b.spec.model == "seed-bn"
    # The notebook's OptimizedCNN adds BatchNorm and dropout at once: the heading names both.
    assert by_factor["model"].heading == "BatchNorm + dropout (the notebook's OptimizedCNN)"
    assert "lr differs too: 0.001 vs 0.002" in by_factor["schedule"].note
    assert by_factor["optimizer"].note == "lr differs too: 0.01 vs 0.001"  # every field besides the factor's
    (study,) = batch_studies(summaries)
    assert [s.spec.batch_size for s in study.rows] == [64, 256, 512]
    assert study.sentence.startswith("Batch size 256 reached 97% fastest")
    assert study.comparison.exploratory  # the two best sizes were picked after seeing the results
    said = conclusions(qs, [study], decide(qs, [study]))
    assert any("points above seed-simple · SGD lr 0.01 · batch 128 in final test accuracy" in c for c in said)
    assert not any(study.comparison.sentence in s for s in said) and "exploratory" in said[-1]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    inference = [ThroughputRow("seed-bn", bs, ips, 1000 / ips) for bs, ips in ((1, 900.0), (256, 21000.0))]
    return write_report("seed", notebook_results(), out, inference=inference, partial=True)


def test_report_files_and_contents(report):
    html = report.html.read_text()
    md = report.markdown.read_text()
    assert all(p.exists() for p in report.figures) and len(report.figures) == 14  # 7 figures x PNG, SVG
    assert '<table class="recap">' in html and "seed-simple · SGD lr 0.01 · batch 128" in html
    assert "Partial results" in html and "Partial results" in md
    assert "abc123def456" in html and "Test CPU 3000" in html
    assert html.count("data:image/png;base64,") == 7 and 'src="figures/' not in html
    for png in re.findall(r"!\[[^]]*\]\((figures/[^)]+\.png)\)", md):
        assert (report.markdown.parent / png).exists()
    assert "| Configuration | Optimizer | BatchNorm |" in md


def test_awkward_results_still_report(tmp_path):
    """Single seeds, a failed run without a curve, nothing reaching the target, two machines, odd labels."""
    failed = make_result(0, model="seed-bn", **ADAM)
    failed.status, failed.final_accuracy, failed.curve, failed.epochs = "failed", None, [], []
    failed.time_to_target_s = failed.epochs_to_target = None
    gpu = {**ENV, "device": "cuda", "gpu": "Test GPU"}
    results = [make_result(0, final=0.95, time_to_target=None, **SGD),
               make_result(0, final=0.96, time_to_target=None, environment=gpu, **ADAM),
               make_result(0, final=0.94, time_to_target=None, batch_size=256, **SGD), failed]
    labels = {results[0].spec.config_key(): "SGD <base> | & co"}
    paths = write_report("awkward", results, tmp_path, labels=labels)
    html, md = paths.html.read_text(), paths.markdown.read_text()
    assert "2 different environments" in html and "Test GPU" in html
    assert "SGD &lt;base&gt; | &amp; co" in html and "SGD <base> \\| & co" in md
    assert "A single run each: no test possible" in html
    assert "No test was possible" in html  # the conclusions say why nothing is concluded
    assert "none finished" in html and "1 failed" in html and "not reached" in html


def test_a_pruned_search_point_is_no_environment_of_its_own(tmp_path):
    """A pruned trial's environment is written by the process that stopped it, without the device it resolved:
    the report's hardware section must not count it as a second environment."""
    pruned = make_result(1, final=0.90, time_to_target=None, status="pruned", **SGD)
    pruned.device, pruned.environment = "auto", {k: v for k, v in ENV.items() if k != "device"}
    paths = write_report("pruned", [make_result(0, **SGD), make_result(1, **ADAM), pruned], tmp_path)
    html = paths.html.read_text()
    assert "different environments" not in html and "Test CPU 3000" in html


def test_no_results_raises(tmp_path):
    with pytest.raises(ResultsMissing):
        write_report("seed", [], tmp_path)


def test_report_renders_in_chromium(report, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed at /usr/bin/chromium")
    # The page sets its title to the number of broken images once everything has loaded.
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load', () => { const imgs = [...document.images]; "
              "document.title = 'broken=' + imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length "
              "+ ' total=' + imgs.length; });</script>")
    probe.write_text(report.html.read_text().replace("</body>", script + "</body>"))
    moved = tmp_path / "elsewhere"  # no figures/ folder beside it: the page must stand alone
    moved.mkdir()
    shutil.move(probe, moved / "probe.html")
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
           (moved / "probe.html").as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    match = re.search(r"<title>broken=(\d+) total=(\d+)</title>", dom)
    assert match, dom[:500]
    embedded = [f for f in report.figures if f.suffix == ".png"]  # each figure is embedded once, as PNG
    assert len(embedded) >= 6
    assert match.groups() == ("0", str(len(embedded)))


def test_seconds_read_in_three_figures_and_never_in_exponent_notation():
    from mnistbench.report.analysis import seconds_text

    assert [seconds_text(x) for x in (0.0123, 4.134, 12.34, 1010.2, 37_570.0)] == [
        "0.0123 s", "4.13 s", "12.3 s", "1,010 s", "37,570 s"]


def test_time_to_target_figure_names_each_target_when_workloads_differ(tmp_path):
    """A study over workloads with targets of their own (mnist 97%, fashion-mnist 88%): the figure's title names
    no single target and each row names its own; one target keeps "Time to 97%"."""
    from mnistbench.report.plots import plot_time_to_target

    mnist = [make_result(s, target=0.97) for s in range(2)]
    fashion = [make_result(s, final=0.9, target=0.88, optimizer="adam", lr=0.001) for s in range(2)]
    mixed = plot_time_to_target(summarize(mnist + fashion), tmp_path)
    assert mixed.title == "Time to target"
    assert plot_time_to_target(summarize(mnist), tmp_path / "one").title == "Time to 97%"
