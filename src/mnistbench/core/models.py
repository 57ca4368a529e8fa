"""The model registry: the seed notebook's two CNNs exactly, the architecture its summary describes, and
compact models for speed work. Every entry reports parameters and FLOPs per image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
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


class MaxPool2x2(nn.MaxPool2d):
    """nn.MaxPool2d(2) that, in evaluation, takes the elementwise maximum of the four strided views of its input
    instead: the same values, without the indices ATen's CPU max-pool computes for every output even then.
    Training, and maps of odd size, go to nn.MaxPool2d. (The mode decides, not whether a gradient is wanted, so
    that a traced or exported model has one graph.)"""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or x.shape[-1] % 2 or x.shape[-2] % 2:
            return super().forward(x)
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                             torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


class FP32(nn.Module):
    """Its module in fp32 whatever autocast is around it: for a layer too small for bf16's products to pay for
    casting its weights and gradients at every step."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.module(x.float())


class MapsLinear(nn.Linear):
    """A dense layer over a stack of maps (images, channels, rows, columns) that reads them in the order they lie
    in memory when channels-last, (rows, columns, channels): nn.Flatten's (channels, rows, columns) order copies
    channels-last maps into it and their gradient back, and the speedrun's step took 1.05-1.06x as long with it
    at batch 256 and 1.07-1.11x at 512, in bf16 on the AMX Xeon (two runs: docs/reference/speedrun-cpu/
    flatten-xeon-amx.log). Its weight is nn.Linear's initialisation with the columns moved to that order, so a
    seed gives the function nn.Flatten + nn.Linear give; in a Sequential its parameters are named as no Flatten +
    Linear pair's are, so weights saved in the other order are refused, not misread. Model `speedrun-nhwc`."""

    def __init__(self, channels: int, side: int, out_features: int, bias: bool = True):
        super().__init__(channels * side * side, out_features, bias=bias)
        with torch.no_grad():
            self.weight.copy_(self.weight.view(out_features, channels, side, side).permute(0, 2, 3, 1)
                              .reshape(out_features, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.permute(0, 2, 3, 1).flatten(1), self.weight, self.bias)  # a view when channels-last


FOUR_NEIGHBOURS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # right, left, down, up: the order the record summed them in
EIGHT_NEIGHBOURS = FOUR_NEIGHBOURS + ((1, 1), (1, -1), (-1, 1), (-1, -1))


def speedrun_cnn(dense_bias: bool = True, fp32_output: bool = False, maps_order: bool = False) -> nn.Module:
    """The CPU speedrun model: a stride-2 first conv replaces conv + max-pool on the 24x24 map, whose pooling
    (forward, backward and the zero-fill of its gradient) cost about 40% of the reference model's step on
    CPU; label smoothing in the recipe buys back the ~0.1 point this costs. The second conv has 24 channels:
    on the tuning seeds' validation split it matched 32 channels' accuracy at 150 steps with 23% fewer FLOPs
    per image (conv backward is half of a step), where narrower convs (20) or a smaller hidden layer (64) lost
    0.1 point, a stride-2 second conv 0.2 and earlier pooling 0.4. The convolutions have no biases: summing
    their gradients over every position of the maps cost 5% of a run (oneDNN, channels-last), and the same
    seeds' validation accuracy was unchanged without them (99.041% against 99.045% at 200 steps)
    (docs/reference/speedrun-cpu/explore.py and explore.log). `dense_bias` and `fp32_output` are the lean
    model's (`lean_speedrun_cnn`), `maps_order` (the dense layer a `MapsLinear`) the channels-last one's."""
    # Built in the layers' order: a seed draws the initial weights in that order, the same for every variant.
    layers = [
        nn.Conv2d(1, 16, 5, stride=2, bias=False), nn.ReLU(),       # 28 -> 12
        nn.Conv2d(16, 24, 3, bias=False), MaxPool2x2(), nn.ReLU(),  # 12 -> 10 -> 5
    ]
    layers += ([MapsLinear(24, 5, 128, bias=dense_bias)] if maps_order
               else [nn.Flatten(), nn.Linear(24 * 5 * 5, 128, bias=dense_bias)])
    layers.append(nn.ReLU())
    output = nn.Linear(128, 10, bias=dense_bias)
    return nn.Sequential(*layers, FP32(output) if fp32_output else output)


def whitened_speedrun_cnn(shifts: tuple[tuple[int, int], ...] = FOUR_NEIGHBOURS, **shape) -> nn.Module:
    """The speedrun model with a frozen first conv that `whiten_first_conv` fills from the training images,
    and translation votes for the test images it is unsure of (`TranslationVotes`). Frozen, and reading the
    images (which need no gradient), the first conv has no backward at all, nor has anything below the second
    conv's weights: 1.24-1.33x less time per step in bf16 on the AMX Xeon (docs/reference/speedrun-cpu/
    perstep-xeon-amx.log)."""
    net = speedrun_cnn(**shape)
    net[0].weight.requires_grad_(False)
    return TranslationVotes(net, shifts=shifts)


def lean_speedrun_cnn(maps_order: bool = False) -> nn.Module:
    """The whitened speedrun model with fewer operators a step: dense layers without biases (no bias gradients
    to sum, two fewer tensors for the optimizer) and the output layer in fp32 (no bf16 casts of its weights and
    gradients); it votes with the eight one-pixel neighbours. On the tuning seeds' validation split, with four
    neighbours' votes: 99.05% at 150 steps against 99.01% for the same layers with the biases and a bf16 output
    (20 seeds), and 1.04x faster a run, interleaved (docs/reference/speedrun-cpu/explore.log, rounds 17 and 24).
    The speedrun records of 2026-12-02. With `maps_order`, model `speedrun-nhwc`: the same function for a seed,
    its dense layer reading the maps as they lie in channels-last memory (`MapsLinear`)."""
    return whitened_speedrun_cnn(EIGHT_NEIGHBOURS, dense_bias=False, fp32_output=True, maps_order=maps_order)


class TranslationVotes(nn.Module):
    """Test-time augmentation at the price of the images it changes: in evaluation, an image whose two highest
    logits are closer than `margin` gets the mean of the logits of itself and its translations by `shifts`
    (rows, columns; torch.roll: MNIST's border is background). On the speedrun's tuning seeds and validation
    split, votes on 2.3% of the images gave the accuracy of voting on all of them for a fortieth of the extra
    forward passes (+0.13 point at 160 steps; docs/reference/speedrun-cpu/explore.log, rounds 10 and 12b); the eight
    neighbours gave 0.015-0.03 point more than the four (rounds 12 and 21); two budgets of 130 steps chosen
    with them missed the claim on held-out seeds (p = 0.011 and 0.16, RECORDS.md), and the records since
    2026-12-02 (`speedrun-lean`, `speedrun-nhwc`, 150 batches) vote with them.
    Training is untouched. `seen` and `revoted` count the images evaluated and voted on, so a benchmark can
    count the votes' FLOPs from what the data asked."""

    def __init__(self, net: nn.Module, margin: float = 1.0, shifts: tuple[tuple[int, int], ...] = FOUR_NEIGHBOURS):
        super().__init__()
        self.net, self.margin, self.shifts = net, margin, shifts
        self.seen = self.revoted = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        if self.training:
            return logits
        top2 = logits.detach().float().topk(2, dim=1).values
        unsure = top2[:, 0] - top2[:, 1] < self.margin
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
            # A traced graph has one shape: every image's views, the same logits where kept; a pass per
            # translation, so an exported model's memory grows with its batch, not eight times its batch.
            votes = self._votes(x, logits, one_pass=False)
            return torch.where(unsure[:, None], votes, logits.float()).to(logits.dtype)
        which = unsure.nonzero().squeeze(1)
        self.seen += len(x)
        self.revoted += len(which)
        if len(which) == 0:
            return logits
        return logits.index_copy(0, which, self._votes(x[which], logits[which]).to(logits.dtype))

    def _votes(self, x: torch.Tensor, logits: torch.Tensor, one_pass: bool = True) -> torch.Tensor:
        """The mean of the images' logits and their translations', in fp32 (bf16 sums would round each vote).
        In eager evaluation the views of the few images voted on go through the network in one pass: a pass per
        translation, over a few dozen images each, made the speedrun's test evaluation 1.23x longer (70 ms
        against 57 at its batch of 2,500 on the AMX Xeon: docs/reference/speedrun-cpu/overheads-xeon-amx.log)."""
        shifted = [torch.roll(x, shift, (-2, -1)) for shift in self.shifts]
        if one_pass:
            voted = self.net(torch.cat(shifted)).float().view(len(self.shifts), -1, logits.shape[-1]).sum(0)
        else:
            voted = sum(self.net(view).float() for view in shifted)
        return (logits.float() + voted) / (1 + len(self.shifts))


def image_patches(images: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """The patches `conv` reads, one row each (images x positions, channels x kernel rows x kernel columns: the
    order of F.unfold and of the conv's weight), copied once from strided views of the images: the fit is on the
    clock of every speedrun run, and read with F.unfold and a transposed copy it took twice as long (12.2 ms
    against 5.9 on the AMX Xeon: docs/reference/speedrun-cpu/overheads-xeon-amx.log). An undilated conv with
    numeric padding, as every registered model's first conv is; others are refused."""
    if conv.dilation != (1, 1) or isinstance(conv.padding, str):
        raise ValueError("patch whitening reads patches of an undilated conv with numeric padding")
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    padded = F.pad(images, (pw, pw, ph, ph)) if ph or pw else images
    views = padded.unfold(2, kh, sh).unfold(3, kw, sw)  # (images, channels, rows, columns, kh, kw): no copy
    return views.permute(0, 2, 3, 1, 4, 5).reshape(-1, images.shape[1] * kh * kw)


def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float = 0.1) -> None:
    """Patch whitening for the first convolution (airbench's data-dependent first layer): its filters become
    the leading eigenvectors of the covariance of the image patches it reads, each scaled by 1 / sqrt(eigenvalue
    + eps) and taken with both signs (the ReLU after it keeps either half), so its outputs are decorrelated
    with unit variance. Filled in place; whether it then trains is the model's choice (requires_grad)."""
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels != images.shape[1] or conv.out_channels % 2:
        raise ValueError("patch whitening needs the images' channels and an even number of filters")
    with torch.no_grad():
        patches = image_patches(images.float(), conv)  # (images x positions, patch size)
        # The 25x25 eigendecomposition on the CPU whatever the device: no solver start-up timed on a GPU, and
        # backends without eigh (MPS) still fit.
        eigenvalues, eigenvectors = torch.linalg.eigh((patches.T @ patches / len(patches)).cpu())  # ascending
        half = conv.out_channels // 2
        if half > len(eigenvalues):
            raise ValueError(f"patch whitening: {conv.out_channels} filters, but patches have "
                             f"{len(eigenvalues)} values")
        leading = (eigenvectors[:, -half:] / (eigenvalues[-half:] + eps).sqrt()).T.flip(0)  # largest first
        # An eigenvector's sign is arbitrary (it varies with the thread count): fix it, largest entry positive.
        leading *= leading.gather(1, leading.abs().argmax(1, keepdim=True)).sign()
        conv.weight.copy_(torch.cat([leading, -leading]).view_as(conv.weight).to(conv.weight.device))


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
    # A data-dependent initialisation (patch whitening): the trial runs it on the training clock, right after
    # building the model, on the first `fit_images` training images. The speedrun's 1,000 (144,000 5x5 patches)
    # gave the validation accuracy of 2,000 and 5,000; runs fitting on 5,000 were 0.06 s longer (explore.log,
    # round 10).
    fit: Callable[[nn.Module, torch.Tensor], None] | None = None
    fit_images: int = 1000

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
MODELS.add("speedrun-whitened", ModelEntry(
    whitened_speedrun_cnn, "the speedrun model with a frozen patch-whitening first conv and translation votes on "
    "the images it is unsure of", "speedrun-whitened", fit=whiten_first_conv))
MODELS.add("speedrun-lean", ModelEntry(
    lean_speedrun_cnn, "the whitened speedrun model without dense biases, its output layer in fp32, voting with "
    "eight neighbours", "speedrun-whitened", fit=whiten_first_conv))
MODELS.add("speedrun-nhwc", ModelEntry(
    lambda: lean_speedrun_cnn(maps_order=True), "speedrun-lean with its dense layer reading the maps in "
    "channels-last order (no flatten copy; the same function for a seed)", "speedrun-whitened", fit=whiten_first_conv))
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


def _layer_flops(model: nn.Module, image_shape: tuple[int, int, int], record) -> None:
    """One forward pass of the network that trains (a TranslationVotes' inner network: its votes cost what the
    data asks, counted by the model itself), calling record(layer, forward FLOPs, whether its input needs a
    gradient) for every convolution and linear layer."""
    net = model.net if isinstance(model, TranslationVotes) else model

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            record(module, 2 * k * output[0].numel(), inputs[0].requires_grad)
        else:
            record(module, 2 * module.in_features * module.out_features, inputs[0].requires_grad)

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = net.training
    net.eval()
    try:
        net(torch.zeros(1, *image_shape, device=next(net.parameters()).device))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()


def flops_per_image(model: nn.Module, image_shape: tuple[int, int, int] = (1, 28, 28)) -> int:
    """Forward multiply-adds x 2 of the convolutions and linear layers, counted with forward hooks."""
    total = 0

    def record(_layer, flops, _input_needs_grad):
        nonlocal total
        total += flops

    with torch.no_grad():
        _layer_flops(model, image_shape, record)
    return total


def step_flops_per_image(model: nn.Module, image_shape: tuple[int, int, int] = (1, 28, 28)) -> int:
    """What one image costs a training step: each layer's forward, plus in backward the gradient of its weights
    if they train and of its input if that needs one (each as much as the forward). About three times the
    forward for most models; less where the first layers are frozen or read the images, which need none."""
    total = 0

    def record(layer, flops, input_needs_grad):
        nonlocal total
        total += flops * (1 + layer.weight.requires_grad + input_needs_grad)

    with torch.inference_mode(False), torch.enable_grad():  # which inputs need a gradient is the question
        _layer_flops(model, image_shape, record)
    return total
