"""Quasi-random search: points of a scrambled Halton or Sobol sequence mapped onto a declared space."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.stats import qmc

SIGNIFICANT = 3  # sampled values are rounded to 3 significant figures: readable labels, stable trial ids


class Dimension(BaseModel):
    """One searched hyperparameter: a range, on a log scale for rates (equal coverage of each decade)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    scale: Literal["log", "linear"] = "linear"

    @model_validator(mode="after")
    def _check(self) -> "Dimension":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.scale == "log" and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self

    def map(self, u: float) -> float:
        """The value at position u in [0, 1) of the range, rounded, and kept inside it."""
        if self.scale == "log":
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return min(max(float(f"{value:.{SIGNIFICANT}g}"), self.low), self.high)


def sample_points(space: dict[str, Dimension], n: int, seed: int = 0,
                  method: Literal["halton", "sobol"] = "halton") -> list[dict[str, float]]:
    """n points of the space, the same for the same (space, n, seed, method) on any machine.
    Halton by default: Sobol's balance holds only for powers of two, and studies rarely run 16 or 32 trials."""
    names = sorted(space)  # a fixed dimension order, whatever order the TOML file lists them in
    engine = (qmc.Halton if method == "halton" else qmc.Sobol)(d=len(names), scramble=True, seed=seed)
    if method == "sobol":
        # Draw the next power of two (balanced) and keep the first n, which SciPy would warn about otherwise.
        unit = engine.random_base2(max(0, math.ceil(math.log2(n))))[:n]
    else:
        unit = engine.random(n)
    return [{name: space[name].map(float(u)) for name, u in zip(names, row)} for row in unit]
