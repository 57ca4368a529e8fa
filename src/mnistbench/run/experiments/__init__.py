"""Experiments: the built-in studies (TOML files beside this module) and the loader for users' files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from ...registry import Registry
from .schema import Config, Experiment, Grid, Inference, Select, parse_experiment, read_experiment

HERE = Path(__file__).parent


@dataclass(frozen=True)
class BuiltinExperiment:
    path: Path
    description: str

    def load(self) -> Experiment:
        return read_experiment(self.path)


def _discover() -> Registry[BuiltinExperiment]:
    registry: Registry[BuiltinExperiment] = Registry("experiment")
    for path in sorted(HERE.glob("*.toml")):
        import tomllib

        description = tomllib.loads(path.read_text()).get("description", "")
        registry.add(path.stem, BuiltinExperiment(path, description))
    return registry


EXPERIMENTS = _discover()


def load_experiment(file_or_name: str) -> Experiment:
    """A built-in name (`mnistbench list experiments`) or the path of a TOML file."""
    path = Path(file_or_name)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"experiment file {path} not found", "check the path")
        return read_experiment(path)
    return EXPERIMENTS.get(file_or_name).load()


__all__ = ["EXPERIMENTS", "Config", "Experiment", "Grid", "Inference", "Select", "load_experiment",
           "parse_experiment", "read_experiment"]
