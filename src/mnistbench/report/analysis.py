"""Statistics over seeds: the metrics read off a trial, samples over seeds, configurations grouped and summarized,
and the environment factors that make two trials' times incomparable. Comparisons live in comparison.py."""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from scipy import stats

from ..core.models import MODELS
from ..core.recipes import optimizer_title
from ..core.result import COMPLETE, TrialResult
from ..core.spec import TrialSpec
from .significance import ALPHA  # noqa: F401  (ALPHA lives in significance.py; read here by comparison.py)



def three_figures(x: float) -> int:
    """Decimals that show three significant figures (9.80, 12.3, 0.450), so a spread lines up with its mean."""
    return max(0, 2 - math.floor(math.log10(abs(x)))) if x else 2


def seconds_text(x: float) -> str:
    """'4.13 s', '12.3 s', '1,010 s': three significant figures, never an exponent."""
    return f"{x:,.{three_figures(x)}f} s"


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def target_text(target: float) -> str:
    return f"{100 * target:g}%"


def targets_text(targets: set[float]) -> str:
    """"97%" for one target; "target" when workloads bring targets of their own ("Time to target")."""
    return target_text(next(iter(targets))) if len(targets) == 1 else "target"


@dataclass(frozen=True)
class Stat:
    """A sample over seeds: mean, sample std and the half-width of the 95% Student-t interval."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / self.n if self.values else None

    @property
    def std(self) -> float | None:
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def ci95(self) -> float | None:
        if self.n < 2:
            return None
        return float(stats.t.ppf(0.975, self.n - 1)) * self.std / math.sqrt(self.n)


@dataclass(frozen=True)
class Metric:
    """How to read one number off a trial, format it, and phrase a significant difference."""

    noun: str  # "final test accuracy", "time to {target}"
    value: Callable[[TrialResult], float | None]
    scale: float  # 100 shows accuracy in percent
    suffix: str  # after a value: "%", " s"
    unit: str  # of a difference or a spread: "points" for accuracy
    decimals: Callable[[float], int]
    higher_is_better: bool
    missing: str  # what n = 0 means for this metric
    neither: str  # the same said of both groups: "Neither A nor B {neither}"
    # A run without a value did not get there: it is censored where it stopped (`censor`), not dropped.
    censor: Callable[[TrialResult], float] | None = None

    @property
    def censored(self) -> bool:
        return self.censor is not None

    def fmt(self, x: float, spread: float | None = None) -> str:
        """'4.13 s' or '4.13 s ± 0.25': the spread in the mean's decimals, without the unit."""
        d = self.decimals(x * self.scale)
        text = f"{x * self.scale:.{d}f}{self.suffix}"
        return text if spread is None else f"{text} ± {spread * self.scale:.{d}f}"


def _finished_accuracy(r: TrialResult) -> float | None:
    # Diverged and failed runs have no meaningful final accuracy; they are counted in the status instead.
    ok = r.status in COMPLETE and r.final_accuracy is not None and math.isfinite(r.final_accuracy)
    return r.final_accuracy if ok else None


def _epochs_trained(r: TrialResult) -> float:
    return r.curve[-1].epoch if r.curve else float(r.spec.epochs or 0)


METRICS: dict[str, Metric] = {
    "accuracy": Metric(
        "final test accuracy", _finished_accuracy, 100, "%", "points", lambda x: 2, True,
        "has no finished run", "has a finished run"),
    # A seed that missed the target trained for all its timed seconds without getting there: censored there.
    "time_to_target": Metric(
        "time to {target}", lambda r: r.time_to_target_s, 1, " s", "s", three_figures, False,
        "never reached {target}", "reached {target}", censor=lambda r: r.train_seconds),
    "epochs_to_target": Metric(
        "epochs to {target}", lambda r: r.epochs_to_target, 1, " epochs", "epochs", lambda x: 2, False,
        "never reached {target}", "reached {target}", censor=_epochs_trained),
}


def ran_in_its_environment(r: TrialResult) -> bool:
    """Whether the trial's environment is the one it trained in. A failed trial's, or a pruned search point's,
    is written by the parent process, which never resolved its precision or set its allocator."""
    return r.status not in ("failed", "pruned")


def _precision(r: TrialResult) -> str | None:
    if r.environment.get("precision"):
        return r.environment["precision"]  # "auto" as it resolved on the machine
    return None if r.spec.precision == "auto" else r.spec.precision  # None: not known, not told apart


# What makes two trials' times incomparable. Each entry reads one factor off a trial; a group of trials that
# takes more than one value of any of them comes from a "mixed environment".
ENVIRONMENT_FACTORS: dict[str, Callable[[TrialResult], object]] = {
    "machine": lambda r: " + ".join(str(v) for v in (r.environment.get("cpu"), r.environment.get("gpu")) if v),
    "threads": lambda r: r.environment.get("torch_threads"),
    "torch": lambda r: r.environment.get("torch"),
    "precision": _precision,
    # glibc's default allocator against core.hardware.keep_freed_memory (1.2-1.7x per step apart); trials
    # stored before the setting existed have no value and are not told apart
    "allocator": lambda r: (("freed memory kept" if r.environment["malloc_kept"] else "glibc default")
                            if ran_in_its_environment(r) and "malloc_kept" in r.environment else None),
    # Other trials running on the same store while it trained (workers of this run, other `run`s): a shared
    # machine's times are not a solo machine's. Stores from before it was recorded are not told apart.
    "sharing": lambda r: (("alone" if r.environment["shared_with"] == 0 else "shared with other trials")
                          if ran_in_its_environment(r) and "shared_with" in r.environment else None),
}
TIMED_METRICS = frozenset({"time_to_target"})  # metrics measured by the clock, which the environment moves
# Factors two compared configurations must share as well; precision may differ between them (it can be the very
# technique compared), only not within one configuration.
SHARED_FACTORS = ("machine", "threads", "torch", "allocator", "sharing")

# Whether time differences may be tested across mixed environments. A policy of a whole report or session
# (set by `--allow-mixed`), not of one comparison, so it is held here rather than passed through every caller.
_ALLOW_MIXED: ContextVar[bool] = ContextVar("allow_mixed", default=False)


@contextmanager
def mixed_environments_allowed(allow: bool = True) -> Iterator[None]:
    token = _ALLOW_MIXED.set(allow)
    try:
        yield
    finally:
        _ALLOW_MIXED.reset(token)


def mixed_environments_allowed_now() -> bool:
    return _ALLOW_MIXED.get()


def environment_mix(results: Sequence[TrialResult], factors: Sequence[str] = tuple(ENVIRONMENT_FACTORS)
                    ) -> dict[str, list]:
    """The factors on which `results` differ, each with its values in order of appearance ({} when uniform).
    Results stored before a factor was recorded (None) are not told apart on it."""
    mix = {}
    for name in factors:
        read = ENVIRONMENT_FACTORS[name]
        values = list(dict.fromkeys(v for r in results if (v := read(r)) not in (None, "")))
        if len(values) > 1:
            mix[name] = values
    return mix


def mix_text(mix: dict[str, list]) -> str:
    """'threads 1, 2; torch 2.12.0, 2.13.0'."""
    return "; ".join(f"{name} {', '.join(str(v) for v in values)}" for name, values in mix.items())


def revision_text(r: TrialResult) -> str:
    """The code a trial ran: '6152a2c6db84', '5750aec13ed7+dirty', or 'unknown' (no checkout, older stores)."""
    env = r.environment
    if env.get("git_revision"):
        return env["git_revision"] + ("+dirty" if env.get("git_dirty") else "")
    return env.get("mnistbench_git") or "unknown"


def metric_stat(results: Sequence[TrialResult], metric: str) -> Stat:
    get = METRICS[metric].value
    return Stat(tuple(float(v) for r in results if (v := get(r)) is not None))


def describe_stat(s: Stat, metric: str | Metric, spread: str = "std") -> str:
    """'98.91% ± 0.08' (mean ± std, or ± ci95) or a single value when there is one run."""
    m = METRICS[metric] if isinstance(metric, str) else metric
    return m.fmt(s.mean, getattr(s, spread))


@dataclass(frozen=True)
class ThroughputRow:
    """Inference throughput of one configuration at one batch size, averaged over its seeds."""

    label: str
    batch_size: int
    images_per_second: float
    ms_per_image: float
    seeds: int = 1  # trained models measured
    images_per_second_std: float | None = None  # over those models; None for one

    @property
    def images_per_second_text(self) -> str:
        """'902,338 ± 3,597' over several models, '902,338' for one."""
        spread = "" if self.images_per_second_std is None else f" ± {self.images_per_second_std:,.0f}"
        return f"{self.images_per_second:,.0f}{spread}"


@dataclass
class ConfigSummary:
    """One configuration (a spec without its seed) over all its seeds."""

    key: str
    label: str
    spec: TrialSpec  # the first seed's spec: everything but `seed` is shared by the group
    results: list[TrialResult] = field(repr=False)
    accuracy: Stat
    time_to_target: Stat  # over the seeds that reached the target only
    epochs_to_target: Stat
    status_counts: dict[str, int]

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def reached(self) -> int:
        return sum(r.reached for r in self.results)

    @property
    def seeds(self) -> list[int]:
        return sorted(r.spec.seed for r in self.results)

    @property
    def batchnorm(self) -> bool:
        return MODELS.get(self.spec.model).batchnorm

    @property
    def optimizer_name(self) -> str:
        return optimizer_title(self.spec.optimizer)

    @property
    def environment_mix(self) -> dict[str, list]:
        """Factors on which this configuration's trials differ ({} when they share one environment)."""
        return environment_mix(self.results)

    @property
    def revisions(self) -> list[str]:
        """The code revisions its trials came from, in order of appearance."""
        return list(dict.fromkeys(revision_text(r) for r in self.results))


def derive_label(spec: TrialSpec, omit: frozenset[str] = frozenset()) -> str:
    """A readable name from what usually tells configurations apart."""
    parts = {
        "model": spec.model,
        "optimizer": f"{optimizer_title(spec.optimizer)} lr {spec.lr:g}",
        "schedule": spec.schedule if spec.schedule != "constant" else "",
        "batch_size": f"batch {spec.batch_size}",
        "precision": spec.precision if spec.precision != "fp32" else "",
    }
    return " · ".join(v for k, v in parts.items() if v and k not in omit)


def summarize(results: Sequence[TrialResult], labels: dict[str, str] | None = None) -> list[ConfigSummary]:
    """Group by spec.config_key() in order of first appearance; `labels` maps a config key to its name."""
    groups: dict[str, list[TrialResult]] = {}
    for r in results:
        groups.setdefault(r.spec.config_key(), []).append(r)
    labels = labels or {}
    names = {k: labels.get(k) or derive_label(g[0].spec) for k, g in groups.items()}
    taken = list(names.values())
    summaries = []
    for key, group in groups.items():
        # Two configurations that differ only in a detail the label leaves out must not share a name.
        label = names[key] if taken.count(names[key]) == 1 else f"{names[key]} [{key[:6]}]"
        counts: dict[str, int] = {}
        for r in group:
            counts[r.status] = counts.get(r.status, 0) + 1
        summaries.append(ConfigSummary(
            key, label, group[0].spec, group, metric_stat(group, "accuracy"),
            metric_stat(group, "time_to_target"), metric_stat(group, "epochs_to_target"), counts))
    return summaries
