"""The tuning protocol (DeepOBS, AlgoPerf): quasi-random search judged on a validation split only, the best
point rerun with held-out seeds and reported on the test set, and the search's cost reported beside it.

This module holds the rules (what a tuning block says, which trials it plans, which point wins, when a
trial is hopeless, what the search cost); protocol.py runs them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.result import TrialResult
from ..core.spec import TrialSpec
from ..errors import ConfigError
from .search import Dimension, sample_points

if TYPE_CHECKING:
    from ..run.experiments.schema import Experiment

NESTED = ("optimizer_args", "schedule_args")  # "optimizer_args.momentum" searches one option of the optimizer
ELIGIBLE = ("reached", "budget")  # a diverged, failed or pruned trial cannot win


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prune(_Strict):
    """Stop a tuning trial that is `margin` (accuracy, 0.1 = 10 points) behind the median of the earlier
    trials of its configuration at the same step, once `min_trials` of them have reached that step."""

    margin: float = Field(0.1, gt=0, lt=1)
    min_trials: int = Field(3, ge=1)


class Tuning(_Strict):
    """`tuning = { trials = 20, space = { lr = { low = 1e-4, high = 1, scale = "log" } }, seeds = 5 }`."""

    trials: int = Field(gt=0, le=10000, description="points of the search space tried per configuration")
    space: dict[str, Dimension]
    seeds: int | None = Field(None, gt=0, description="held-out seeds of the rerun; default: the experiment's")
    trial_seeds: int = Field(1, gt=0, le=1000, description="seeds per tuning point (the score is their mean)")
    search: Literal["halton", "sobol"] = "halton"
    seed: int = Field(0, ge=0, description="scrambles the quasi-random sequence")
    prune: Prune | None = None
    # What the winning point is judged by, on the validation split. A study that ranks techniques by time to
    # target chooses by it too (AlgoPerf's rule), final validation accuracy breaking ties; one that ranks by
    # accuracy chooses by accuracy. Choosing by one and ranking by the other favours whichever the choice fits.
    choose_by: Literal["accuracy", "time_to_target"] = "accuracy"

    @field_validator("space")
    @classmethod
    def _known_fields(cls, space: dict[str, Dimension]) -> dict[str, Dimension]:
        if not space:
            raise ValueError("the search space is empty: give at least one range, e.g. lr")
        for key in space:
            head, _, option = key.partition(".")
            if option and head not in NESTED:
                raise ValueError(f"space key '{key}': only {' and '.join(NESTED)} take a dotted option")
            if not option and (head not in TrialSpec.model_fields or head == "seed"):
                raise ValueError(f"space key '{key}' is not a trial field")
        return space

    def trial_seed_list(self) -> list[int]:
        return list(range(self.trial_seeds))

    def rerun_seed_list(self, seeds: int) -> list[int]:
        """Seeds the search never saw: the rerun's numbers start after the tuning trials' own."""
        return list(range(self.trial_seeds, self.trial_seeds + seeds))

    def points(self) -> list[dict[str, float]]:
        return sample_points(self.space, self.trials, self.seed, self.search)


@dataclass(frozen=True)
class TuningTrial:
    config: str  # label of the configuration being tuned
    point: int  # index of the search point
    values: dict[str, float]
    label: str
    spec: TrialSpec


def point_text(values: dict[str, float]) -> str:
    return ", ".join(f"{k.rpartition('.')[2]} {v:g}" for k, v in values.items())


def with_point(fields: dict[str, Any], values: dict[str, float]) -> dict[str, Any]:
    """The fields with the point's values set, dotted keys inside their option table."""
    out = dict(fields)
    for key, value in values.items():
        head, _, option = key.partition(".")
        if option:
            out[head] = {**out.get(head, {}), option: value}
        else:
            out[head] = value
    return out


def tuning_trials(experiment: "Experiment") -> list[TuningTrial]:
    """Every configuration x every search point x the tuning seeds, judged on the validation split."""
    from ..run.experiments.schema import Config

    tuning = experiment.tuning
    points = tuning.points()
    out, seen = [], set()
    for config in experiment.configs():
        base = experiment.fields_for(config)
        if not base.get("val_size"):
            raise ConfigError(f"{experiment.source or experiment.name}: config '{config.label}': tuning judges on a "
                              "validation split, and this configuration has none",
                              "use a workload (workload = \"mnist\") or set val_size = N")
        for i, values in enumerate(points):
            label = f"{config.label} · tuning {i + 1}: {point_text(values)}"
            point_config = Config(label=label, group=config.group,
                                  fields={**with_point(base, values), "eval_on": "val"})
            for seed in tuning.trial_seed_list():
                spec = experiment.spec_for(point_config, seed)
                if spec.id not in seen:  # rounding can merge two points of a small space: run it once
                    seen.add(spec.id)
                    out.append(TuningTrial(config.label, i, values, label, spec))
    return out


@dataclass(frozen=True)
class Choice:
    """The winning point of one configuration and what finding it cost."""

    config: str
    values: dict[str, float] | None  # None: no tuning trial of it could win (all diverged, failed or pruned)
    score: float | None  # mean final validation accuracy of the winning point
    spec: TrialSpec | None  # the winner's spec at its first tuning seed
    trials: int  # tuning trials stored
    pruned: int
    seconds: float  # wall seconds of all its tuning trials (training and evaluation; data loading excluded)
    train_seconds: float


def validation_score(result: TrialResult) -> float | None:
    """Final validation accuracy: the last evaluation of a trial evaluated on `val`, never its test
    accuracy (`final_accuracy`), which the choice must not see."""
    if result.spec.eval_on != "val":
        raise ValueError(f"trial {result.spec.id} was evaluated on {result.spec.eval_on}, not on a validation split")
    if result.status not in ELIGIBLE or not result.curve:
        return None
    return result.curve[-1].eval_accuracy


CHOICE_RULES = {  # Tuning.choose_by -> how the report words the rule
    "accuracy": "its final accuracy on the validation split (ties: the earlier time to target)",
    "time_to_target": "its time to the target on the validation split (a seed that missed counts as never; "
                      "ties: the higher final validation accuracy)",
}


def choose_best(config: str, planned: Sequence[TuningTrial], results: dict[str, TrialResult],
                by: str = "accuracy") -> Choice:
    """The best point over its tuning seeds by `by` (a key of CHOICE_RULES), judged on the validation split:
    the best mean final validation accuracy, ties to the earlier mean time to target; or the earlier mean time
    to target (a seed that missed it: never), ties to the better accuracy; then the earlier point.
    `results`: spec id -> result."""
    mine = [t for t in planned if t.config == config]
    done = [(t, results[t.spec.id]) for t in mine if t.spec.id in results]
    by_point: dict[int, list[tuple[TuningTrial, TrialResult]]] = {}
    for t, r in done:
        by_point.setdefault(t.point, []).append((t, r))
    best = None
    for point, runs in sorted(by_point.items()):
        scores = [validation_score(r) for _, r in runs]
        if any(s is None for s in scores):
            continue
        times = [r.time_to_target_s if r.time_to_target_s is not None else float("inf") for _, r in runs]
        accuracy, time = -statistics.fmean(scores), statistics.fmean(times)
        key = (accuracy, time, point) if by == "accuracy" else (time, accuracy, point)
        if best is None or key < best[0]:
            best = (key, runs[0][0], statistics.fmean(scores))
    return Choice(
        config=config, values=best[1].values if best else None, score=best[2] if best else None,
        spec=best[1].spec if best else None, trials=len(done), pruned=sum(r.status == "pruned" for _, r in done),
        seconds=sum(r.wall_seconds for _, r in done), train_seconds=sum(r.train_seconds for _, r in done))


def should_prune(step: int, accuracy: float, earlier: Sequence[dict[int, float]], rule: Prune) -> bool:
    """Hopeless: `rule.margin` behind the median of the earlier trials' validation accuracy at this step.
    `earlier`: one {step: validation accuracy} per earlier trial of the same configuration."""
    at_step = [curve[step] for curve in earlier if step in curve]
    if len(at_step) < rule.min_trials:
        return False
    return accuracy < statistics.median(at_step) - rule.margin


def search_keys(experiment: "Experiment | None") -> set[str]:
    """The configuration keys of a tuned experiment's search points ({} for any other experiment)."""
    if experiment is None or experiment.tuning is None:
        return set()
    return {t.spec.config_key() for t in tuning_trials(experiment)}


def beyond_search(summaries: Sequence, experiment: "Experiment | None") -> list:
    """What a tuned experiment reports: the configurations the search chose, rerun with the held-out seeds. The
    search points are single-seed probes judged on the validation split; they belong in the tuning table and
    the sensitivity plots, not among the results compared (every probe against every other one would be
    untestable single runs). Any other experiment reports every configuration."""
    search = search_keys(experiment)
    return [s for s in summaries if s.key not in search]
