"""Experiment files: TOML validated into typed models, expanded into labelled TrialSpecs (grid x seeds)."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ...errors import ConfigError, MnistbenchError
from ...core.spec import TrialSpec, describe_validation_error
from ...workloads import apply_workload
from ...workloads.tuning import Protocol, Select, Tuning, candidates


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Config(_Strict):
    """One configuration: a label and the TrialSpec fields that differ from the defaults."""

    label: str
    group: str = ""  # which study of the experiment it belongs to (e.g. "batch size")
    fields: dict[str, Any] = Field(default_factory=dict)


class Grid(_Strict):
    """A cartesian product of field values; `label` is a format string over the varied fields."""

    label: str
    group: str = ""
    vary: dict[str, list[Any]]
    fixed: dict[str, Any] = Field(default_factory=dict)

    def expand(self) -> list[Config]:
        keys = list(self.vary)
        out = []
        for values in itertools.product(*(self.vary[k] for k in keys)):
            chosen = dict(zip(keys, values))
            try:
                label = self.label.format(**chosen)
                group = self.group.format(**chosen)  # "{optimizer}": one technique per value, for profiles
            except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:  # "{lr.x}", "{lr[0]}"
                raise ConfigError(f"grid label '{self.label}' or group '{self.group}' cannot be formatted ({exc})",
                                  f"use only the varied fields: {', '.join(keys)}") from None
            out.append(Config(label=label, group=group, fields={**self.fixed, **chosen}))
        return out


class Inference(_Strict):
    """Measure inference of the model trained by the configuration `config` (as the notebook does)."""

    config: str
    batch_size: int = Field(1000, gt=0)
    repeats: int = Field(10, gt=0)
    warmup: int = Field(1, ge=0)


class Sequential(_Strict):
    """Seeds added in rounds until every comparison is decided or `max_seeds` is reached (`run --until-decided`).
    The stopping rule is report/sequential.py's; the experiment's `seeds` is the first look."""

    max_seeds: int = Field(gt=1, le=1000)
    step: int = Field(1, gt=0, description="seeds added to each undecided configuration per round")
    start: int | None = Field(None, gt=0, description="seeds at the first look; default: the experiment's")


class Experiment(_Strict):
    name: str
    description: str = ""
    seeds: int = Field(1, gt=0)
    defaults: dict[str, Any] = Field(default_factory=dict)
    config: list[Config] = Field(default_factory=list)
    grid: list[Grid] = Field(default_factory=list)
    inference: list[Inference] = Field(default_factory=list)
    select: Select | None = None
    tuning: Tuning | None = None  # quasi-random search per configuration (workloads/tuning.py)
    # The order in which the report asks its questions (report/decisions.py): the first gets the full 5% level,
    # each next one only once the one before is decided. Empty: all at once, under Holm's correction.
    questions: list[Literal["optimizer", "model", "schedule"]] = Field(default_factory=list)
    sequential: Sequential | None = None  # add seeds until decided (run --until-decided --max-seeds N)
    # `run --set FIELD=VALUE`: spec fields over every configuration's own (precision = "auto" for the fast path),
    # validated like the file and stored with the definition, so results and the report say what ran.
    overrides: dict[str, Any] = Field(default_factory=dict)
    source: str = ""  # where it was read from, for messages
    # Spec defaults of the code that stored this definition, where they differ from today's: a stored definition
    # expands as it ran (a field it leaves unset takes the default of its day), beneath everything it sets.
    spec_defaults: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="after")
    def _check(self) -> "Experiment":
        configs = self.configs()
        if not configs:
            raise ValueError("no configurations: add [[config]] or [[grid]] entries")
        labels = [c.label for c in configs]
        duplicates = sorted({l for l in labels if labels.count(l) > 1})
        if duplicates:
            raise ValueError(f"configuration labels must be unique, repeated: {', '.join(duplicates)}")
        for inf in self.inference:
            if inf.config not in labels:
                raise ValueError(f"inference names config '{inf.config}', which is not defined")
        if len(set(self.questions)) != len(self.questions):
            raise ValueError(f"questions names a question twice: {', '.join(self.questions)}")
        first = self.sequential and (self.sequential.start or self.seeds)
        if self.sequential and self.sequential.max_seeds <= first:
            raise ValueError(f"sequential.max_seeds ({self.sequential.max_seeds}) must be above the {first} seeds "
                             "of the first look")
        if self.sequential and self.protocol:
            raise ValueError("sequential seeds are for comparisons of fixed configurations, not for a choice "
                             "([tuning] or [select]): give the reruns more seeds with `seeds` instead")
        if self.select and self.tuning:
            raise ValueError("give either select (a grid, best per group) or tuning (a search per configuration)")
        for c in configs:  # fail now, before anything runs, on any invalid combination
            self.spec_for(c, seed=0)
        if self.protocol:  # and on every candidate of the choice (a validation split, never the test set)
            self.trials()
        return self

    def configs(self) -> list[Config]:
        return [*self.config, *(c for g in self.grid for c in g.expand())]

    def fields_for(self, config: Config) -> dict[str, Any]:
        """The configuration's spec fields over the defaults, a `workload` expanded into what it fixes."""
        where = f"{self.source}: config '{config.label}': " if self.source else f"config '{config.label}': "
        try:
            return {**self.spec_defaults, **apply_workload({**self.defaults, **config.fields, **self.overrides})}
        except MnistbenchError as exc:
            raise ConfigError(f"{where}{exc.message}", exc.hint) from None

    @property
    def protocol(self) -> Protocol | None:
        """The block that makes a choice ([tuning] or [select]), if any: both follow workloads/tuning.py."""
        return self.tuning or self.select

    def spec_for(self, config: Config, seed: int) -> TrialSpec:
        return self.spec_from(config.label, self.fields_for(config), seed)

    def spec_from(self, label: str, fields: dict[str, Any], seed: int) -> TrialSpec:
        """The TrialSpec of `fields` at `seed`; an error names the configuration `label`."""
        where = f"{self.source}: config '{label}': " if self.source else f"config '{label}': "
        try:
            return TrialSpec(**{**fields, "seed": seed})
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, where=where)) from None
        except MnistbenchError as exc:  # an unknown model/optimizer/schedule, or an option it does not take
            raise ConfigError(f"{where}{exc.message}", exc.hint) from None

    def trials(self, seeds: int | None = None) -> list[tuple[str, TrialSpec]]:
        """(label, spec) for every configuration and seed; with `select` or `tuning`, the candidates only (the
        reruns depend on what they score: run/protocol.py plans them)."""
        if self.protocol:
            return [(t.label, t.spec) for t in candidates(self)]
        return [(c.label, self.spec_for(c, s)) for c in self.configs() for s in range(seeds or self.seeds)]


def parse_experiment(text: str, source: str) -> Experiment:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})", "fix the syntax at that line") from None
    except RecursionError:  # tomllib recurses once per nesting level
        raise ConfigError(f"{source}: not valid TOML (arrays or tables nested too deeply)") from None
    try:
        return Experiment(**{**raw, "source": source})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, where=f"{source}: ")) from None
    except MnistbenchError as exc:  # raised by a validator: a grid label, an unknown model inside a config
        message = exc.message if exc.message.startswith(f"{source}: ") else f"{source}: {exc.message}"
        raise ConfigError(message, exc.hint) from None


def read_experiment(path: Path) -> Experiment:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read experiment file {path} ({exc})") from None
    return parse_experiment(text, str(path))
