"""Inference throughput of a trained model, measured as the notebook did (warm-up, then timed passes over
the test set in fixed batches), reported as mean/std per pass, ms per image and images per second."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .clock import Stopwatch
from .hardware import keep_freed_memory, resolve_precision
from ..data import Split


@dataclass
class InferenceResult:
    batch_size: int
    repeats: int
    images: int
    pass_seconds: list[float]  # each timed pass over the whole split
    device: str
    precision: str
    threads: int | None = None  # torch's intra-op threads during the passes (None: stored before it was kept)

    @property
    def mean_s(self) -> float:
        return statistics.fmean(self.pass_seconds)

    @property
    def std_s(self) -> float:
        return statistics.stdev(self.pass_seconds) if len(self.pass_seconds) > 1 else 0.0

    @property
    def ms_per_image(self) -> float:
        return 1000 * self.mean_s / self.images

    @property
    def images_per_second(self) -> float:
        return self.images / self.mean_s

    def to_dict(self) -> dict:
        return {**asdict(self), "mean_s": self.mean_s, "std_s": self.std_s, "ms_per_image": self.ms_per_image,
                "images_per_second": self.images_per_second}

    @classmethod
    def from_dict(cls, d: dict) -> "InferenceResult":
        return cls(**{k: d[k] for k in ("batch_size", "repeats", "images", "pass_seconds", "device", "precision")},
                   threads=d.get("threads"))


@torch.inference_mode()
def measure_inference(model: nn.Module, split: Split, batch_size: int = 1000, repeats: int = 10, warmup: int = 1,
                      precision: str = "fp32") -> InferenceResult:
    keep_freed_memory()
    device = split.images.device
    model.eval()
    precision = resolve_precision(precision, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    batches = [split.images[i:i + batch_size] for i in range(0, len(split), batch_size)]
    with autocast:
        for _ in range(warmup):  # first calls allocate and pick kernels: not what we measure
            model(batches[0])
        times = []
        for _ in range(repeats):
            with Stopwatch(device) as watch:
                for batch in batches:
                    model(batch)
            times.append(watch.elapsed)
    return InferenceResult(batch_size, repeats, len(split), times, str(device), precision, torch.get_num_threads())
