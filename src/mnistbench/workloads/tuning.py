"""The one selection protocol (DESIGN rule 10; DeepOBS, AlgoPerf): candidates judged on a validation split with
the tuning seeds only, a choice once every candidate of a group has finished, the chosen one rerun with held-out
seeds and reported on the test set, and what the choice cost reported beside it. Two blocks declare it:
`[tuning]` (a quasi-random search per configuration) and `[select]` (the best configuration per group).

This module holds the rules (what a block says, which candidates it plans, which one wins, when a trial is
hopeless, what the reruns are); run/protocol.py runs them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.recipes import OPTIMIZERS
from ..core.result import COMPLETE, FINISHED, TrialResult
from ..core.spec import TrialSpec
from ..errors import ConfigError
from .search import Dimension, sample_points

if TYPE_CHECKING:
    from ..run.experiments.schema import Experiment

NESTED = ("optimizer_args", "schedule_args")  # "optimizer_args.momentum" searches one option of the optimizer


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prune(_Strict):
    """Stop a tuning trial that is `margin` (accuracy, 0.1 = 10 points) behind the median of the earlier
    trials of its configuration at the same step, once `min_trials` of them have reached that step."""

    margin: float = Field(0.1, gt=0, lt=1)
    min_trials: int = Field(3, ge=1)


class Protocol(_Strict):
    """What every choice shares: the seeds candidates are judged with, the rule that judges them, the held-out
    seeds of the rerun (disjoint from the judging ones, so the winner's own trial is never among the reported)."""

    seeds: int | None = Field(None, gt=0, description="held-out seeds of the rerun; default: the experiment's")
    trial_seeds: int = Field(1, gt=0, le=1000, description="seeds per candidate (the score is their mean)")
    # What the winner is judged by, on the validation split. A study that ranks techniques by time to target
    # chooses by it too (AlgoPerf's rule), final validation accuracy breaking ties; one that ranks by accuracy
    # chooses by accuracy. Choosing by one and ranking by the other favours whichever the choice fits.
    choose_by: Literal["accuracy", "time_to_target"] = "accuracy"

    def trial_seed_list(self) -> list[int]:
        return list(range(self.trial_seeds))

    def rerun_seed_list(self, seeds: int) -> list[int]:
        """Seeds the choice never saw: the rerun's numbers start after the candidates' own."""
        return list(range(self.trial_seeds, self.trial_seeds + seeds))

    def rerun_label(self, group: str) -> str:
        return f"{group} · tuned"


class Select(Protocol):
    """`[select]`: per `group_by`, the configuration that wins on the validation split, rerun with held-out
    seeds on the test set (the notebook's advice to try several learning rates, done by the protocol)."""

    group_by: list[str]
    label: str = "best of {group}"

    def rerun_label(self, group: str) -> str:
        return group  # already "best lr for adam": the label the file gave the winner


class Tuning(Protocol):
    """`tuning = { trials = 20, space = { lr = { low = 1e-4, high = 1, scale = "log" } }, seeds = 5 }`."""

    trials: int = Field(gt=0, le=10000, description="points of the search space tried per configuration")
    space: dict[str, Dimension]
    search: Literal["halton", "sobol"] = "halton"
    seed: int = Field(0, ge=0, description="scrambles the quasi-random sequence")
    prune: Prune | None = None

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


def _judging_fields(experiment: "Experiment", config) -> dict[str, Any]:
    """A candidate's fields, evaluated on the validation split; refused before anything runs when there is no
    such split, or when the file asks for the test set (a choice made there would be reported there too)."""
    where = f"{experiment.source or experiment.name}: config '{config.label}'"
    asked = {**experiment.defaults, **config.fields}
    if asked.get("eval_on") == "test":
        raise ConfigError(f"{where}: a choice is made on a validation split, and eval_on = \"test\" would make it "
                          "on the test set it reports on", "set eval_on = \"val\" with val_size = N, or use a workload")
    base = experiment.fields_for(config)
    if not base.get("val_size"):
        raise ConfigError(f"{where}: a choice is made on a validation split, and this configuration has none",
                          "use a workload (workload = \"mnist\") or set val_size = N")
    return {**base, "eval_on": "val"}


def tuning_trials(experiment: "Experiment") -> list[TuningTrial]:
    """Every configuration x every search point x the tuning seeds, judged on the validation split."""
    tuning = experiment.tuning
    points = tuning.points()
    out, seen = [], set()
    for config in experiment.configs():
        base = _judging_fields(experiment, config)
        # A learning-rate-free optimizer (Prodigy) has no rate to search: every point takes lr 1 (its multiplier),
        # and the specs that leaves equal are run once (below), so its budget shows the one point it needed.
        lr_free = OPTIMIZERS.get(base.get("optimizer", TrialSpec.model_fields["optimizer"].default)).lr_free
        for i, values in enumerate(points):
            if lr_free and "lr" in values:
                values = {**values, "lr": 1.0}
            label = f"{config.label} · tuning {i + 1}: {point_text(values)}"
            for seed in tuning.trial_seed_list():
                spec = experiment.spec_from(label, with_point(base, values), seed)
                if spec.id not in seen:  # rounding can merge two points of a small space: run it once
                    seen.add(spec.id)
                    out.append(TuningTrial(config.label, i, values, label, spec))
    return out


def select_trials(experiment: "Experiment") -> list[TuningTrial]:
    """Every configuration at the tuning seeds on the validation split, grouped by the `[select]` fields: the
    candidates of each group are its configurations."""
    select = experiment.select
    out, points = [], {}
    for config in experiment.configs():
        fields = _judging_fields(experiment, config)
        first = experiment.spec_from(config.label, fields, 0)
        group = select.label.format(group=" + ".join(str(getattr(first, f)) for f in select.group_by))
        point = points[group] = points.get(group, -1) + 1
        values = {k: v for k, v in config.fields.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for seed in select.trial_seed_list():
            out.append(TuningTrial(group, point, values, config.label, experiment.spec_from(config.label, fields, seed)))
    return out


def candidates(experiment: "Experiment") -> list[TuningTrial]:
    """What the experiment's protocol judges ([] for an experiment that chooses nothing)."""
    if experiment.tuning:
        return tuning_trials(experiment)
    if experiment.select:
        return select_trials(experiment)
    return []


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
    if result.status not in COMPLETE or not result.curve:
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
    """The configuration keys of an experiment's candidates ({} for one that chooses nothing)."""
    if experiment is None:
        return set()
    return {t.spec.config_key() for t in candidates(experiment)}


def beyond_search(summaries: Sequence, experiment: "Experiment | None") -> list:
    """What an experiment that chooses reports: the chosen configurations, rerun with the held-out seeds. The
    candidates are probes judged on the validation split; they belong in the tuning table and the sensitivity
    plots, not among the results compared (every probe against every other one would be untestable single
    runs). Any other experiment reports every configuration."""
    search = search_keys(experiment)
    return [s for s in summaries if s.key not in search]


def choices_from(experiment: "Experiment", results: dict[str, TrialResult],
                 planned: list[TuningTrial] | None = None) -> list[Choice]:
    """Each group's winner, from its finished candidates (validation split only); `results`: spec id -> result.
    The runner and the report both choose here, so they always agree."""
    planned = planned if planned is not None else candidates(experiment)
    ids = {t.spec.id for t in planned}
    finished = {i: r for i, r in results.items() if i in ids and r.status in FINISHED}
    groups = list(dict.fromkeys(t.config for t in planned))
    return [choose_best(g, planned, finished, experiment.protocol.choose_by) for g in groups]


def complete_groups(planned: Sequence[TuningTrial], finished: set[str]) -> set[str]:
    """Groups all of whose candidates are stored: only they may choose, so a resumed run picks the same winner
    as an uninterrupted one."""
    return {c for c in {t.config for t in planned} if all(t.spec.id in finished for t in planned if t.config == c)}


def tuned_key(choice: Choice) -> str:
    """The configuration key shared by the reruns of a winner (its spec, on the test set, any seed)."""
    return choice.spec.model_copy(update={"eval_on": "test"}).config_key()


def rerun_seeds(experiment: "Experiment", seeds: int | None) -> int:
    """How many held-out seeds each winner is rerun with: --seeds, else the protocol block's, else the file's."""
    return seeds or experiment.protocol.seeds or experiment.seeds


def rerun_specs(experiment: "Experiment", choice: Choice, seeds: int | None) -> list[tuple[str, TrialSpec]]:
    """The winner with every held-out seed, evaluated (and timed to the target) on the test set; the validation
    images stay held out, so it trains on exactly the data the candidates trained on."""
    fields = choice.spec.model_dump()
    label = experiment.protocol.rerun_label(choice.config)
    return [(label, TrialSpec(**{**fields, "eval_on": "test", "seed": s}))
            for s in experiment.protocol.rerun_seed_list(rerun_seeds(experiment, seeds))]


def planned_reruns(experiment: "Experiment", seeds: int | None) -> list[tuple[str, TrialSpec]]:
    """Stand-ins for the reruns before the choice is made (for a dry run's estimate: the cost of a trial does
    not depend on which candidate wins): each group's first candidate, every held-out seed."""
    firsts = {}
    for t in candidates(experiment):
        firsts.setdefault(t.config, t)
    protocol = experiment.protocol
    return [(protocol.rerun_label(g), t.spec.model_copy(update={"eval_on": "test", "seed": s}))
            for g, t in firsts.items() for s in protocol.rerun_seed_list(rerun_seeds(experiment, seeds))]
