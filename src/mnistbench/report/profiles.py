"""Tuned experiments in the report: the tuning table, Dolan-Moré performance profiles (as AlgoPerf scores
submissions) and DeepOBS-style learning-rate sensitivity plots."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.result import TrialResult

from ..workloads.tuning import CHOICE_RULES, Choice, TuningTrial, choices_from, tuned_key, tuning_trials
from .analysis import (SHARED_FACTORS, describe_stat, environment_mix, metric_stat, mix_text,
                       mixed_environments_allowed_now, seconds_text, target_text)
from .plots import FigurePaths, _colors, _figure, _save

TAUS = np.linspace(1.0, 4.0, 301)  # the profile's x axis: within a factor tau of the best


def performance_profile(times: dict[str, dict[str, float]], taus: Sequence[float] = TAUS) -> dict[str, list[float]]:
    """Dolan & Moré (2002): for each technique, the fraction of workloads on which its time is within a factor
    tau of the best technique's time there. `times[technique][workload]`: seconds, `inf` when the technique
    did not reach the target; a workload that no technique solved counts as missed by all of them."""
    workloads = sorted({w for per in times.values() for w in per})
    if not workloads:
        return {t: [0.0 for _ in taus] for t in times}
    best = {w: min(per.get(w, math.inf) for per in times.values()) for w in workloads}
    ratios = {t: [per.get(w, math.inf) / best[w] if math.isfinite(best[w]) else math.inf for w in workloads]
              for t, per in times.items()}
    return {t: [sum(r <= tau for r in rs) / len(workloads) for tau in taus] for t, rs in ratios.items()}


def median_time(results: Sequence[TrialResult]) -> float:
    """Median time to target over seeds, a seed that missed the target counting as infinitely slow (so the
    median is finite only when at least half the seeds reached it)."""
    if not results:
        return math.inf
    return statistics.median(r.time_to_target_s if r.time_to_target_s is not None else math.inf for r in results)


@dataclass(frozen=True)
class TunedConfig:
    """One tuned configuration: its technique, its workload, the search and the reruns of its winner."""

    label: str
    technique: str
    workload: str
    choice: Choice
    search: list[tuple[TuningTrial, TrialResult]]
    reruns: list[TrialResult]

    @property
    def time(self) -> float:
        return median_time(self.reruns)


@dataclass(frozen=True)
class TuningRow:
    technique: str
    workload: str
    chosen: str
    validation: str
    accuracy: str
    time: str
    reached: str
    trials: str
    cost: str


@dataclass(frozen=True)
class TuningSection:
    method: str
    rows: list[TuningRow]
    figures: list[FigurePaths]


def tuned_configs(experiment, results: Sequence[TrialResult]) -> list[TunedConfig]:
    planned = tuning_trials(experiment)
    by_id = {r.spec.id: r for r in results}
    out = []
    for config, choice in zip(experiment.configs(), choices_from(experiment, by_id, planned)):
        fields = {**experiment.defaults, **config.fields}
        winner = tuned_key(choice) if choice.spec is not None else None
        out.append(TunedConfig(
            label=config.label, technique=config.group or config.label,
            workload=str(fields.get("workload") or fields.get("dataset", "mnist")), choice=choice,
            search=[(t, by_id[t.spec.id]) for t in planned if t.config == config.label and t.spec.id in by_id],
            reruns=[r for r in results if winner and r.spec.eval_on == "test" and r.spec.config_key() == winner]))
    return out


def _validation_accuracy(r: TrialResult) -> float | None:
    """The last validation accuracy a search trial reached over the whole split (a pruned trial's, at the last
    whole evaluation before it was stopped: a partial one's is over the images it saw)."""
    whole = [p for p in r.curve if not p.partial]
    return whole[-1].eval_accuracy if whole and r.status != "failed" else None


def _times(configs: Sequence[TunedConfig], reruns: Callable[[TunedConfig], Sequence[TrialResult]]
           ) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, float]] = {}
    for c in configs:
        times.setdefault(c.technique, {})[c.workload] = median_time(reruns(c))
    return times


def profile_band(configs: Sequence[TunedConfig], taus: Sequence[float] = TAUS, resamples: int = 400,
                 seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A 95% band around each technique's profile: the held-out seeds of every configuration resampled with
    replacement, the profile recomputed each time (percentile bootstrap). A profile is a ranking of medians over
    a few seeds; the band shows how much of it those seeds decide."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[list[float]]] = {}
    for _ in range(resamples):
        picked = {id(c): [c.reruns[i] for i in rng.integers(0, len(c.reruns), len(c.reruns))] for c in configs}
        for technique, rho in performance_profile(_times(configs, lambda c: picked[id(c)]), taus).items():
            draws.setdefault(technique, []).append(rho)
    return {t: (np.percentile(d, 2.5, axis=0), np.percentile(d, 97.5, axis=0)) for t, d in draws.items()}


def plot_profiles(configs: Sequence[TunedConfig], out_dir: Path) -> FigurePaths:
    profile = performance_profile(_times(configs, lambda c: c.reruns))
    band = profile_band([c for c in configs if c.reruns])
    fig, (ax,) = _figure(6.4, 4.0)
    for (technique, rho), color in zip(profile.items(), _colors(len(profile))):
        ax.step(TAUS, rho, where="post", label=technique, color=color, linewidth=1.8)
        if technique in band:
            ax.fill_between(TAUS, *band[technique], step="post", color=color, alpha=0.12, linewidth=0)
    ax.set(xlabel="τ (time to target within a factor τ of the best)", ylabel="fraction of workloads",
           xlim=(1, 4), ylim=(-0.03, 1.03))
    ax.legend(fontsize=8, loc="lower right")
    n = len({c.workload for c in configs})
    return _save(fig, out_dir, "performance-profile", "Performance profiles",
                 f"For each technique, the fraction of the {n} workload{'s' * (n > 1)} on which its median time to "
                 "target (over the held-out seeds, on the test set) is within a factor τ of the fastest technique's; "
                 "a technique whose median seed missed the target never counts. Higher and further left is better. "
                 "Shaded: a 95% band from resampling each configuration's seeds; where bands overlap, the seeds do "
                 "not decide the order.")


def plot_sensitivity(configs: Sequence[TunedConfig], dimension: str, scale: str, out_dir: Path) -> FigurePaths:
    workloads = list(dict.fromkeys(c.workload for c in configs))
    fig, axes = _figure(5.0 * len(workloads), 3.8, ncols=len(workloads))
    techniques = list(dict.fromkeys(c.technique for c in configs))
    colors = dict(zip(techniques, _colors(len(techniques))))
    for ax, workload in zip(axes, workloads):
        for c in (c for c in configs if c.workload == workload):
            per_point: dict[float, list[float]] = {}
            for t, r in c.search:
                acc = _validation_accuracy(r)
                if acc is None:
                    continue
                x = t.values[dimension]
                if r.status == "pruned":
                    ax.scatter([x], [acc], facecolors="none", edgecolors=colors[c.technique], s=22)
                else:
                    per_point.setdefault(x, []).append(acc)
            xs = sorted(per_point)
            if xs:
                mean = [statistics.fmean(per_point[x]) for x in xs]
                ax.plot(xs, mean, "o-", color=colors[c.technique], label=c.technique, markersize=3.5, linewidth=1.3)
                ax.fill_between(xs, [min(per_point[x]) for x in xs], [max(per_point[x]) for x in xs],
                                color=colors[c.technique], alpha=0.2, linewidth=0)
            if c.choice.values and dimension in c.choice.values:
                x = c.choice.values[dimension]
                ax.scatter([x], [c.choice.score], marker="*", s=110,
                           color=colors[c.technique], edgecolors="black", linewidths=0.5, zorder=5)
                tested = [r.final_accuracy for r in c.reruns if r.final_accuracy is not None and r.status != "diverged"]
                if tested:  # the held-out seeds' spread at the chosen point, on the test split
                    mid = statistics.fmean(tested)
                    ax.errorbar([x], [mid], yerr=[[mid - min(tested)], [max(tested) - mid]], fmt="D", markersize=4,
                                color=colors[c.technique], markerfacecolor="white", capsize=3, zorder=4)
        ax.set_xscale(scale)
        ax.set(title=workload, xlabel=dimension, ylabel="final validation accuracy")
        ax.legend(fontsize=7, loc="lower left")
    return _save(fig, out_dir, f"sensitivity-{dimension.replace('.', '-')}", f"Sensitivity to {dimension}",
                 f"Final validation accuracy of every search point against its {dimension} (one panel per workload); "
                 "shaded: min–max over the tuning seeds; hollow: pruned trials at the step they were stopped; "
                 "star: the point chosen; white diamond and bar: its rerun's final *test* accuracy, mean and min–max "
                 "over the held-out seeds. Diverged and failed trials have no point.")


def _space_text(tuning) -> str:
    return ", ".join(f"{k} in [{d.low:g}, {d.high:g}]{' (log scale)' if d.scale == 'log' else ''}"
                     for k, d in sorted(tuning.space.items()))


def _method(experiment, configs: Sequence[TunedConfig]) -> str:
    t = experiment.tuning
    val = sorted({r.spec.val_size for c in configs for _, r in c.search})
    seeds = t.trial_seed_list()
    rerun = sorted({r.spec.seed for c in configs for r in c.reruns})
    trials = sum(c.choice.trials for c in configs)
    pruned = sum(c.choice.pruned for c in configs)
    cost = sum(c.choice.seconds for c in configs)
    prune = (f" A search trial {t.prune.margin:g} accuracy behind the median of the earlier trials of its "
             f"configuration at the same step (once {t.prune.min_trials} had reached it) was stopped and stored as "
             "pruned." if t.prune else "")
    return (f"Tuning protocol: for each configuration, {t.trials} points of a scrambled {t.search.title()} sequence "
            f"(seed {t.seed}) over {_space_text(t)}, each trained with seed{'s' * (len(seeds) > 1)} "
            f"{', '.join(map(str, seeds))} and judged by {CHOICE_RULES[t.choose_by]}, a split of "
            f"{' / '.join(map(str, val)) or '?'} images held out of the training set; the test split is never read "
            f"for the choice. The best point was rerun with the held-out seeds {', '.join(map(str, rerun)) or '(none yet)'}"
            f" and is reported on the test set.{prune} The search cost {trials} trials ({pruned} pruned) and "
            f"{seconds_text(cost)} of wall time (training and evaluation, data loading excluded), on the machine(s) listed "
            "under Environment.")


def tuning_row(c: TunedConfig) -> TuningRow:
    ch = c.choice
    target = c.reruns[0].spec.target if c.reruns else (ch.spec.target if ch.spec else None)
    acc = metric_stat(c.reruns, "accuracy")
    return TuningRow(
        technique=c.technique, workload=c.workload + (f" ({target_text(target)})" if target else ""),
        chosen=(", ".join(f"{k} {v:g}" for k, v in ch.values.items()) if ch.values
                else "none (all diverged or failed)" if ch.trials else "not searched yet"),
        validation=f"{100 * ch.score:.2f}%" if ch.score is not None else "–",
        accuracy=describe_stat(acc, "accuracy", "ci95") if acc.n else "not run yet",
        time=(seconds_text(c.time) if math.isfinite(c.time) else "not reached") if c.reruns else "–",
        reached=f"{sum(r.reached for r in c.reruns)}/{len(c.reruns)}",
        trials=f"{ch.trials}" + (f" ({ch.pruned} pruned)" if ch.pruned else ""), cost=seconds_text(ch.seconds) if ch.trials else "–")


def tuning_section(experiment, results: Sequence[TrialResult], fig_dir: Path) -> TuningSection | None:
    """The report's tuning section, or None for an experiment without a tuning protocol."""
    if experiment is None or experiment.tuning is None:
        return None
    configs = tuned_configs(experiment, results)
    figures = []
    reruns = [r for c in configs for r in c.reruns]
    # Profiles compare times across configurations: the same guard as compare() (report/comparison.py).
    mix = {} if mixed_environments_allowed_now() else environment_mix(reruns, SHARED_FACTORS)
    if reruns and not mix:
        figures.append(plot_profiles(configs, fig_dir))
    method = _method(experiment, configs)
    if mix:
        method += (f" No performance profile: the reruns' times were measured in mixed environments ({mix_text(mix)}); "
                   "--allow-mixed draws it anyway.")
    for dimension in sorted(experiment.tuning.space):
        if any(c.search for c in configs):
            figures.append(plot_sensitivity(configs, dimension, experiment.tuning.space[dimension].scale, fig_dir))
    return TuningSection(method, [tuning_row(c) for c in configs], figures)
