"""The model registry: the seed notebook's two CNNs exactly, the architecture its summary describes, and
compact models for speed work. Every entry reports parameters and FLOPs per image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..registry import Registry


class SimpleCNN(nn.Module):
    """The seed's SimpleCNN, layer for layer: conv 32, conv 64, one max-pool, fc 9216-128-10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.flatten(self.pool(x), 1)
        return self.fc2(torch.relu(self.fc1(x)))


class OptimizedCNN(nn.Module):
    """The seed's OptimizedCNN: SimpleCNN with BatchNorm after each conv and dropout 0.25 before fc1.
    `batchnorm` or `dropout` False gives the ablation's halves (identity layers, same parameters otherwise),
    so the two changes the notebook makes at once can be measured apart."""

    def __init__(self, batchnorm: bool = True, dropout: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.bn1 = nn.BatchNorm2d(32) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.bn2 = nn.BatchNorm2d(64) if batchnorm else nn.Identity()
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(0.25) if dropout else nn.Identity()

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.flatten(self.pool(x), 1)
        x = self.dropout(x)
        return self.fc2(torch.relu(self.fc1(x)))


def summary_cnn(batchnorm: bool) -> nn.Module:
    """What the notebook's summary describes (conv 32, pool, conv 64, pool, dense 128, dense 10);
    its code differs (one pool only), so both exist here."""
    norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), norm(32), nn.ReLU(), nn.MaxPool2d(2),   # 28 -> 26 -> 13
        nn.Conv2d(32, 64, 3), norm(64), nn.ReLU(), nn.MaxPool2d(2),  # 13 -> 11 -> 5
        nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def compact_cnn(width: int = 16) -> nn.Module:
    """A small, cheap model for speed work: pooling early keeps the expensive convs on small maps."""
    return nn.Sequential(
        nn.Conv2d(1, width, 5, padding=2, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),  # 14
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),  # 7
        nn.Flatten(), nn.Linear(2 * width * 7 * 7, 10),
    )


def speedrun_cnn() -> nn.Module:
    """The CPU speedrun model: a stride-2 first conv replaces conv + max-pool on the 24x24 map, whose pooling
    (forward, backward and the zero-fill of its gradient) cost about 40% of the reference model's step on
    CPU; label smoothing in the recipe buys back the ~0.1 point this costs. The second conv has 24 channels:
    on the tuning seeds' validation split it matched 32 channels' accuracy at 150 steps with 23% fewer FLOPs
    per image (conv backward is half of a step), where narrower convs (20) or a smaller hidden layer (64) lost
    0.1 point, a stride-2 second conv 0.2 and earlier pooling 0.4. The convolutions have no biases: summing
    their gradients over every position of the maps cost 5% of a run (oneDNN, channels-last), and the same
    seeds' validation accuracy was unchanged without them (99.041% against 99.045% at 200 steps)
    (docs/reference/speedrun-cpu/explore.py and explore.log)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, stride=2, bias=False), nn.ReLU(),       # 28 -> 12
        nn.Conv2d(16, 24, 3, bias=False), nn.MaxPool2d(2), nn.ReLU(),  # 12 -> 10 -> 5
        nn.Flatten(), nn.Linear(24 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def fast_mnist_cnn() -> nn.Module:
    """The GPU record's model (tuomaso/train_mnist_fast, 0.76 s on a laptop GPU): the speedrun's reference."""
    return nn.Sequential(
        nn.Conv2d(1, 24, 5), nn.MaxPool2d(2), nn.ReLU(),             # 28 -> 24 -> 12
        nn.Conv2d(24, 32, 3), nn.MaxPool2d(2), nn.ReLU(),            # 12 -> 10 -> 5
        nn.Flatten(), nn.Linear(32 * 5 * 5, 256), nn.ReLU(), nn.Linear(256, 10),
    )


# Techniques a model may add over its family's base, with the words a report uses for them.
TECHNIQUES = {"batchnorm": "BatchNorm", "dropout": "dropout"}


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[[], nn.Module]
    description: str
    family: str  # models of one family share their layers except the techniques each adds
    adds: frozenset[str] = frozenset()  # keys of TECHNIQUES this model adds over its family's base
    title: str = ""  # how a report names it when a comparison changes several techniques at once
    built_in: frozenset[str] = frozenset()  # techniques its family's base already has (compact's BatchNorm)
    # Train and evaluate channels-last on CPU unless a spec says otherwise: the same fp32 math with its sums
    # in another order. `benchmarks/layout.py` measured it 1.2-1.5x faster in evaluation for both seed models
    # and, in training, as fast (seed-simple) or faster (seed-bn, up to 1.5x at batch 512); an entry that
    # measures slower sets False.
    channels_last: bool = True

    @property
    def techniques(self) -> frozenset[str]:
        return self.adds | self.built_in

    @property
    def batchnorm(self) -> bool:
        return "batchnorm" in self.techniques


MODELS: Registry[ModelEntry] = Registry("model")
MODELS.add("seed-simple", ModelEntry(SimpleCNN, "the notebook's SimpleCNN, exactly as its code", "seed",
                                     title="the notebook's SimpleCNN"))
MODELS.add("seed-bn", ModelEntry(OptimizedCNN, "the notebook's OptimizedCNN (BatchNorm + dropout 0.25)", "seed",
                                 frozenset({"batchnorm", "dropout"}), "the notebook's OptimizedCNN"))
MODELS.add("seed-bn-only", ModelEntry(lambda: OptimizedCNN(dropout=False),
                                      "SimpleCNN + BatchNorm only (the OptimizedCNN without its dropout)", "seed",
                                      frozenset({"batchnorm"}), "SimpleCNN + BatchNorm"))
MODELS.add("seed-dropout", ModelEntry(lambda: OptimizedCNN(batchnorm=False),
                                      "SimpleCNN + dropout 0.25 only (the OptimizedCNN without BatchNorm)", "seed",
                                      frozenset({"dropout"}), "SimpleCNN + dropout"))
MODELS.add("summary", ModelEntry(lambda: summary_cnn(False), "the notebook summary's CNN (two pools)", "summary",
                                 title="the notebook summary's CNN"))
MODELS.add("summary-bn", ModelEntry(lambda: summary_cnn(True), "the notebook summary's CNN with BatchNorm",
                                    "summary", frozenset({"batchnorm"}), "the summary's CNN with BatchNorm"))
MODELS.add("compact", ModelEntry(compact_cnn, "a compact CNN for speed work (16/32 channels, BatchNorm)", "compact",
                                 built_in=frozenset({"batchnorm"})))
MODELS.add("speedrun", ModelEntry(speedrun_cnn,
                                  "the CPU speedrun model (stride-2 first conv, 16/24 channels, no conv biases)",
                                  "speedrun"))
MODELS.add("fast-mnist", ModelEntry(fast_mnist_cnn, "the GPU speed record's model (train_mnist_fast)", "fast-mnist"))


def build_model(name: str) -> nn.Module:
    return MODELS.get(name).build()


def uses_channels_last(model: str, device: torch.device, asked: bool | None) -> bool:
    """The memory layout a trial trains and evaluates in: what the spec asks, else the model's measured
    preference on CPU; elsewhere NCHW (not measured there)."""
    if asked is not None:
        return asked
    return device.type == "cpu" and MODELS.get(model).channels_last


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Module, image_shape: tuple[int, int, int] = (1, 28, 28)) -> int:
    """Forward multiply-adds x 2 of the convolutions and linear layers, counted with forward hooks.
    A training step costs about three times this (forward, and backward for inputs and weights)."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += 2 * k * output[0].numel()

    def linear_hook(module: nn.Linear, _inputs, output):
        nonlocal total
        total += 2 * module.in_features * module.out_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *image_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total
