"""Where stored results can be exported to (MLflow, TensorBoard): a registry, so the CLI and the API ask no names."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.result import TrialResult
from ..registry import Registry


@dataclass
class Exported:
    added: int  # trials written now
    already: int  # trials found there from an earlier export, left as they were
    where: str


@dataclass(frozen=True)
class Destination:
    module: str  # interop module with export(experiment, trials, target) -> Exported
    target: str  # what the destination argument is: "tracking URI" or "folder"
    default: str | None  # None: the library's own default (MLflow's tracking URI)
    description: str

    def export(self, experiment: str, trials: list[tuple[str, TrialResult]], target: Any) -> Exported:
        return importlib.import_module(f"{__package__}.{self.module}").export(experiment, trials, target)


DESTINATIONS: Registry[Destination] = Registry("export destination")
DESTINATIONS.add("mlflow", Destination("to_mlflow", "tracking URI", None,
                                       "one MLflow run per trial (needs mnistbench[mlflow])"))
DESTINATIONS.add("tensorboard", Destination("to_tensorboard", "folder", "tensorboard",
                                            "TensorBoard event files + HParams (needs mnistbench[tensorboard])"))


def default_target(name: str, results_dir: Path) -> Any:
    default = DESTINATIONS.get(name).default
    return None if default is None else Path(results_dir) / default
