"""The experiment report: a self-contained HTML page and a Markdown file, with their figures."""

from __future__ import annotations

import base64
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from jinja2 import Environment, FileSystemLoader

from . import plots
from .analysis import (METRICS, ConfigSummary, ThroughputRow, describe_stat, mix_text, mixed_environments_allowed,
                       ran_in_its_environment, seconds_text, summarize, target_text, targets_text)
from .comparison import RANK, Comparison
from .decisions import Decisions, conclusions, decide, family
from .questions import FACTORS, Question, batch_studies, questions
from .sequential import replay, sequential_decisions, stopping_rows
from ..errors import ResultsMissing
from .plots import FigurePaths
from ..core.horizon import cadence_text
from .profiles import tuning_section
from ..core.result import BROKEN, TrialResult

TEMPLATES = Path(__file__).parent / "templates"

# Environment keys worth showing, in order, with their display names; a dict, not a chain of ifs.
ENV_FIELDS = {"cpu": "CPU", "logical_cores": "Logical cores", "usable_cores": "Usable cores",
              "torch_threads": "Torch threads", "ram_gb": "RAM (GB)", "os": "OS", "python": "Python",
              "torch": "PyTorch", "torch_build": "PyTorch build", "device": "Device", "gpu": "GPU",
              "mnistbench_git": "Git revision", "mnistbench_version": "mnistbench"}


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)  # PNG and SVG files under out_dir/figures


@dataclass(frozen=True)
class Row:
    """One line of the recap table, already formatted."""

    label: str
    optimizer: str
    batchnorm: str
    schedule: str
    batch_size: int
    accuracy: str
    time: str
    epochs: str
    reached: str


@dataclass(frozen=True)
class EmbeddedFigure:
    title: str
    caption: str
    png: str  # path relative to the report, for the Markdown file
    data_uri: str  # the same PNG embedded, so the HTML survives being moved or mailed


def _mean_ci(stat, metric: str, missing: str) -> str:
    if not stat.n:
        return missing
    return describe_stat(stat, metric, "ci95")


def _row(s: ConfigSummary) -> Row:
    broken = ", ".join(f"{n} {status}" for status, n in s.status_counts.items() if status in BROKEN)
    return Row(s.label, s.optimizer_name, "✓" if s.batchnorm else "✗",
               "✗" if s.spec.schedule == "constant" else s.spec.schedule, s.spec.batch_size,
               _mean_ci(s.accuracy, "accuracy", "none finished"),
               _mean_ci(s.time_to_target, "time_to_target", "not reached"),
               f"{s.epochs_to_target.mean:.2f}" if s.epochs_to_target.n else "–",
               f"{s.reached}/{s.n}" + (f" · {broken}" if broken else ""))


@dataclass(frozen=True)
class Provenance:
    """Where one configuration's numbers came from: the code revisions and whether the environment mixed."""

    label: str
    trials: int
    revisions: str
    mixed: str  # "" when every trial ran in one environment, else what differs ("threads 1, 2")


def _provenance(summaries: Sequence[ConfigSummary]) -> list[Provenance]:
    return [Provenance(s.label, s.n, ", ".join(s.revisions), mix_text(s.environment_mix)) for s in summaries]


def _environments(results: Sequence[TrialResult]) -> list[dict[str, Any]]:
    """Distinct environments (as display name -> value), each with how many trials ran in it. A pruned search
    point's or a failed trial's environment is written by the process that stopped it, not the trial's own
    (its device unresolved), so those count only where no trial ran to the end."""
    seen: dict[tuple, dict[str, Any]] = {}
    for r in [r for r in results if ran_in_its_environment(r)] or results:
        env = {name: r.environment.get(key) for key, name in ENV_FIELDS.items()}
        env["Device"] = env["Device"] or r.device
        shown = {k: v for k, v in env.items() if v not in (None, "")}
        entry = seen.setdefault(tuple(shown.items()), {"fields": shown, "trials": 0})
        entry["trials"] += 1
    return list(seen.values())


def _resolution_text(results: Sequence[TrialResult]) -> str:
    """How finely the stored times to target are resolved (core/target.py states the rule)."""
    searched = [r for r in results if r.target_resolution_steps is not None]
    if not searched:
        return ", so a time to target is known to within one evaluation interval."
    steps = max(r.target_resolution_steps for r in searched)
    seconds = max(r.target_resolution_s for r in searched)
    return (". When an evaluation first meets the target, the weight snapshots kept between it and the last "
            "evaluation that missed are evaluated in order and the first that meets it is the crossing (trials "
            "stored before revision bc216fc bisected them instead, which can land on a later crossing when accuracy "
            "dips), so a time to target is resolved to within "
            f"{steps} step{'s' * (steps != 1)} ({seconds:.2g} s of timed training at most, over "
            f"{len(searched)} trial{'s' * (len(searched) != 1)}).")


def _distinct(values) -> list:
    return list(dict.fromkeys(values))


def _method(results: Sequence[TrialResult], summaries: list[ConfigSummary]) -> list[str]:
    specs = [r.spec for r in results]
    splits = _distinct("the test split" if s.eval_on == "test" else
                       f"a validation split of {s.val_size} images held out of the training set" for s in specs)
    targets = _distinct(target_text(s.target) for s in specs)
    cadence = _distinct(cadence_text(s.eval_every) for s in specs)
    seeds = _distinct(s.n for s in summaries)
    budgets = _distinct(f"{s.steps} steps" if s.steps else f"{s.epochs:g} epochs" for s in specs)
    loads = [r.load_seconds for r in results if r.load_seconds > 0]  # a trial that reused loaded data reports 0
    load = statistics.median(loads) if loads else 0.0
    train, evals = sum(r.train_seconds for r in results), sum(r.eval_seconds for r in results)
    lines = [
        "Only training steps are timed (forward, backward and optimizer step; on a GPU the clock synchronizes "
        f"the device at every start and stop). Data is loaded into memory before the clock starts ({load:.2g} s per "
        f"load, median, {len(loads)} load{'s' * (len(loads) != 1)} for {len(results)} trials), and evaluation runs outside the clock: {seconds_text(evals)} of untimed evaluation against "
        f"{seconds_text(train)} of timed training over all {len(results)} trials.",
        f"Evaluation runs {' or '.join(cadence)}"
        + ("" if cadence == [cadence_text(0)] else " until the target is reached, then at each epoch end")
        + _resolution_text(results),
        f"The target is {' / '.join(targets)} accuracy, checked on {' and '.join(splits)}. "
        f"Budget: {' or '.join(budgets)}.",
        f"Each configuration ran with {' to '.join(str(n) for n in sorted({min(seeds), max(seeds)}))} "
        f"seed{'s' * (max(seeds) > 1)}. Means are given ± the half-width of a 95% Student-t confidence interval; "
        "time and epochs to target are averaged over the seeds that reached the target.",
        "Every comparison leads with its effect and a 95% interval. Time to target: the ratio of the two "
        "configurations' geometric mean times, under a log-normal model of times (a technique changes a time by "
        "a factor), with Welch's t on log times when every seed reached the target; when some seeds missed it, "
        "the same model fitted with those seeds censored at the seconds they trained (a likelihood-ratio test "
        "calibrated on Student's t, with the exact rank test beside it as a robustness check), so a seed that "
        "missed counts instead of being dropped; when one side never reached it, the exact rank test alone. "
        "Final accuracy: the difference in points with Welch's interval and test. Beside each, the probability "
        "that a seed of one configuration does better than a seed of the other, with a bootstrap interval over "
        "seeds (with fewer than five seeds a side that interval is too narrow: read it as descriptive); from "
        "five seeds on, the interquartile mean beside the mean. Groups without spread are not tested: identical "
        "values are no evidence.",
        "A sentence is claimed only when the family's procedure keeps it (the procedure is named under the "
        "conclusions), so the chance of any false claim in the report stays at 5%; a test significant alone but "
        "not kept is an indication. A test whose smallest achievable p cannot pass its threshold is left out of "
        "the family (Tarone's rule) and says how many seeds it needs; every open comparison says how many seeds "
        "a side would give 80% power if its observed effect were the true one. A comparison picked after seeing "
        "the results (the best batch size against the runner-up) is exploratory and never claimed. Sentences "
        "quote mean ± standard deviation.",
    ]
    compiled = sum(r.compile_seconds for r in results)
    if compiled:
        lines.append(f"torch.compile warm-up ({seconds_text(compiled)} in all) was excluded from the clock.")
    warmed = sum(r.warmup_seconds for r in results)
    if warmed:
        lines.append(f"Every trial first warmed up untimed on a throwaway copy of its model (each batch shape, one "
                     f"evaluation batch; {seconds_text(warmed)} in all), so kernel creation stays off the clock.")
    return lines


def _figures(summaries, qs, studies, inference, fig_dir: Path) -> list[FigurePaths]:
    out = []
    # The notebook's first figure is SGD against Adam; any other optimizer pair stands in when those are absent.
    optimizer_pairs = [q for q in qs if q.factor == "optimizer"]
    pair = next((q for q in optimizer_pairs if {q.a.spec.optimizer, q.b.spec.optimizer} == {"sgd", "adam"}),
                optimizer_pairs[0] if optimizer_pairs else None)
    if pair:
        out.append(plots.plot_convergence(pair.a, pair.b, fig_dir))
    if any(r.epochs for s in summaries for r in s.results):
        out.append(plots.plot_accuracy_per_epoch(summaries, fig_dir))
    if any(r.curve for s in summaries for r in s.results):
        out.append(plots.plot_accuracy_vs_time(summaries, fig_dir))
    if any(s.reached for s in summaries):
        out.append(plots.plot_time_to_target(summaries, fig_dir))
    if studies:
        out.append(plots.plot_batch_studies(studies, fig_dir))
    if inference:
        out.append(plots.plot_inference(inference, fig_dir))
    return out


def _grouped(qs: list[Question]) -> list[tuple[str, list[Question]]]:
    """Questions under their heading, in the order of FACTORS (the notebook's order), then of appearance."""
    ordered = sorted(qs, key=lambda q: list(FACTORS).index(q.factor))
    headings = list(dict.fromkeys(q.heading for q in ordered))
    return [(h, [q for q in ordered if q.heading == h]) for h in headings]


def verdict(c: Comparison, decisions: Decisions) -> str:
    """The family's word on a comparison, as the conclusions use it: 'claimed' only when the procedure keeps it."""
    return decisions[c].verdict


def effect_text(c: Comparison, decisions: Decisions) -> str:
    """Small print under a sentence: effect sizes, the test, and what would decide an open comparison."""
    parts = []
    if c.hedges_g is not None:
        parts.append(f"Hedges' g {c.hedges_g:+.2f}".replace("-", "−"))
    if c.test == RANK:
        parts.append(f"Mann-Whitney U {c.statistic:g}")
    d = decisions[c]
    if d.why:
        parts.append(d.why)
    if d.seeds_needed and d.verdict != "too few seeds":
        parts.append(f"≥ {d.seeds_needed} seeds a side would decide it")
    return " · ".join(parts)


OLD_SELECT = ("This store holds reruns made by an earlier mnistbench, whose `[select]` chose and reported on the "
              "validation split and reused the winning seed. They count as extra seeds of the candidate they "
              "reran, which is never compared; the winners reported here were rerun with held-out seeds on the "
              "test set, so the two are never mixed.")


def _chosen_the_old_way(definition, results: Sequence[TrialResult]) -> bool:
    """Reruns stored by `[select]` before it followed the selection protocol: evaluated on the validation split,
    with seeds beyond the ones candidates are judged with (the winning trial's own seed among them)."""
    return bool(definition is not None and definition.select
                and any(r.spec.eval_on == "val" and r.spec.seed >= definition.select.trial_seeds for r in results))


def _embed(f: FigurePaths, out_dir: Path) -> EmbeddedFigure:
    uri = "data:image/png;base64," + base64.b64encode(f.png.read_bytes()).decode("ascii")
    return EmbeddedFigure(f.title, f.caption, f.png.relative_to(out_dir).as_posix(), uri)


def write_report(experiment: str, results: list[TrialResult], out_dir: Path, labels: dict[str, str] | None = None,
                 inference: Sequence[ThroughputRow] | None = None, partial: bool = False,
                 undefined: Sequence[ConfigSummary] = (), allow_mixed: bool = False, definition=None) -> ReportPaths:
    """Write out_dir/report.html, out_dir/report.md and out_dir/figures/*; `labels`: config_key -> name.
    `undefined`: stored configurations the experiment no longer defines, listed apart and never compared;
    `allow_mixed`: test time differences even across mixed environments; `definition`: the Experiment,
    whose tuning protocol (if any) adds profiles and sensitivity plots."""
    if not results:
        raise ResultsMissing(f"no results to report for experiment '{experiment}'",
                             "run the experiment first, or check that the store path is the one it wrote to")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from ..workloads.tuning import beyond_search

    summaries = beyond_search(summarize(results, labels), definition)
    with mixed_environments_allowed(allow_mixed):
        qs, studies = questions(summaries), batch_studies(summaries)
        tuning = tuning_section(definition, results, out_dir / "figures")
    order = definition.questions if definition is not None else ()
    decisions = decide(qs, studies, order=order)
    stops = []
    if definition is not None and definition.sequential:  # the looks of `run --until-decided`, replayed
        seq = definition.sequential
        record = replay(results, seq.start or definition.seeds, seq.max_seeds, seq.step, labels, order)
        decisions = sequential_decisions(qs, studies, decisions, record)
        stops = stopping_rows(record)
    made = _figures(summaries, qs, studies, list(inference or []), out_dir / "figures")
    compared = [*family(qs, studies), *(s.comparison for s in studies if s.comparison and s.comparison.exploratory)]
    if any(c.effect for c in compared):
        made.insert(0, plots.plot_forest(compared, [decisions[c].verdict for c in compared], out_dir / "figures"))
    made += tuning.figures if tuning else []
    target = targets_text({s.spec.target for s in summaries} or {results[0].spec.target})
    context = {
        "experiment": experiment, "partial": partial, "target": target,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "n_trials": len(results), "n_configs": len(summaries),
        "environments": _environments(results),
        "method": _method(results, summaries) + ([OLD_SELECT] if _chosen_the_old_way(definition, results) else []),
        "rows": [_row(s) for s in summaries], "question_groups": _grouped(qs),
        "studies": [(st, [_row(s) for s in st.rows]) for st in studies],
        "figures": [_embed(f, out_dir) for f in made], "inference": list(inference or []),
        "conclusions": conclusions(qs, studies, decisions), "effect": lambda c: effect_text(c, decisions),
        "verdict": lambda c: verdict(c, decisions), "tuning": tuning,
        "provenance": _provenance(summaries), "allow_mixed": allow_mixed,
        "undefined": [(s.label, s.n) for s in undefined], "stops": stops,
    }
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=lambda name: name.endswith(".html.j2"),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["md"] = lambda text: str(text).replace("|", "\\|")
    html, md = out_dir / "report.html", out_dir / "report.md"
    html.write_text(env.get_template("report.html.j2").render(**context), encoding="utf-8")
    md.write_text(env.get_template("report.md.j2").render(**context), encoding="utf-8")
    return ReportPaths(html, md, [p for f in made for p in (f.png, f.svg)])
