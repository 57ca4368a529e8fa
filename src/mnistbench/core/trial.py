"""run_trial(): the timed training loop. The only place that owns the training clock.

Measurement rules (see docs/ARCHITECTURE.md): data is in memory before the clock starts; every trial first
warms up untimed on a throwaway copy of its model (forward and backward of each batch shape it will see, an
optimizer step and one evaluation batch), so kernel creation and allocator growth stay off the clock while
the timed run's weights, optimizer state and random streams are untouched; only training steps are timed;
evaluation is untimed and runs on the cadence the horizon sets until the target is reached (then only at
epoch ends, for the per-epoch history), always on the weights the technique means to be evaluated
(core/weights.py: Schedule-Free's average, an EMA); time-to-target is found finer than that cadence by a search over
weight snapshots (core/target.py, which states the rule and its resolution); a non-finite loss, checked
off the clock every few dozen steps and at every evaluation, ends the trial as `diverged`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .clock import Stopwatch, now
from ..data import Data, Split, load
from ..errors import ConfigError
from .environment import describe, load_average
from .hardware import keep_freed_memory, random_streams_kept, resolve_precision, torch_threads
from .horizon import horizon
from .models import MODELS, build_model, uses_channels_last
from .recipes import OPTIMIZERS, make_optimizer, make_schedule
from .result import CurvePoint, EpochPoint, TrialResult
from .spec import TrialSpec
from .target import Crossing, Snapshot, search_crossing
from .weights import BN_BATCHES, evaluation_weights

# Evaluation batch when a spec leaves it to the device. On a 2-core CPU a batch of 2,000 makes
# intermediate tensors (2000 x 64 x 24 x 24 floats = 295 MB in the seed models) that leave the caches:
# `benchmarks/layout.py --part eval` found 250 the best of 100/250/1000/2000, 1.4x faster than 2,000 in the
# same layout and 1.8-2.1x faster than 2,000 in NCHW (the old default); a GPU wants large batches.
CPU_EVAL_BATCH = 250
DEVICE_EVAL_BATCH = 2000


def eval_batch_size(asked: int | None, device: torch.device) -> int:
    if asked is not None:
        return asked
    return CPU_EVAL_BATCH if device.type == "cpu" else DEVICE_EVAL_BATCH


@dataclass
class Progress:
    """Sent to the progress callback after every evaluation."""

    step: int
    total_steps: int
    epoch: float
    train_loss: float
    accuracy: float | None  # None: a partial evaluation (it stopped once it could no longer meet the target)
    train_seconds: float
    seen: int | None = None  # a partial evaluation: the images it read before it stopped


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'", "use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for but CUDA is not available", "use --device cpu or auto")
    return device


def autocast_for(precision: str, device: torch.device):
    """The autocast context of a precision ("auto" resolved for `device`): bf16 matmuls and convolutions,
    with weights, optimizer state and the loss kept in fp32; nothing for fp32."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def input_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a trial keeps its images in: the one its first layer computes in. Under bf16 autocast every
    built-in model's first layer (a convolution) rounds its fp32 input to bf16 itself, so images stored in bf16
    give it the same values (tests/test_coverage.py checks every model), read at half the bytes and without the
    cast each batch: 3.8% less time per speedrun step on the AMX Xeon, 0.8% per step of the plain port
    (docs/reference/speedrun-cpu/datatype-xeon-amx.log)."""
    return torch.bfloat16 if resolve_precision(precision, device) == "bf16" else torch.float32


def prepare_split(split: Split, device: torch.device, channels_last: bool,
                  dtype: torch.dtype = torch.float32) -> Split:
    """The split on the device, in the layout the model trains in (with one input channel, channels-last
    only restrides: no copy), so that evaluation runs the same kernels as training, and in `dtype`
    (`input_dtype`). Off the clock, as loading is."""
    images = split.images.to(device=device, dtype=dtype)  # one copy at most, not one per argument
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return Split(images, split.labels.to(device))


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for sums over a whole split, except on MPS, which has no float64 (float32 loses ~1e-7 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def evaluate(model: nn.Module, split: Split, batch_size: int | None, autocast) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on a whole split, in eval mode (BatchNorm statistics, no dropout)."""
    accuracy, loss, _ = evaluate_toward(model, split, batch_size, autocast)
    return accuracy, loss


@torch.inference_mode()
def evaluate_toward(model: nn.Module, split: Split, batch_size: int | None, autocast,
                    target: float | None = None, margins: list | None = None,
                    order: torch.Tensor | None = None) -> tuple[float, float, int]:
    """Accuracy, mean cross-entropy and the images seen. With a `target`, the pass stops as soon as its misses
    exceed what the target allows on the whole split (it can no longer meet it): accuracy and loss are then
    over the images seen, and below the target by construction. Batches are slices of the split as it lies
    (its layout kept: no copy per batch); the sums stay on the device in fp32 per batch and fp64 across
    batches, read once at the end (and, with a target, the hits once per batch). `margins`, when given, receives
    each image's margin (its label's logit less the best other one: negative when it is missed), per batch.
    `order` (a permutation of the split) is the order the images are read in: it changes when a stopped pass
    stops, never whether it stops."""
    was_training = model.training
    model.eval()
    batch_size = eval_batch_size(batch_size, split.images.device)
    n = len(split)
    allowed = None if target is None else n - correct_needed(target, n)
    correct = torch.zeros((), dtype=torch.long, device=split.labels.device)
    loss = torch.zeros((), dtype=accumulator_dtype(split.labels.device), device=split.labels.device)
    seen = 0
    with autocast:
        for i, images, y in _batches(split, batch_size, order):
            out = model(images).float()
            loss += F.cross_entropy(out, y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
            if margins is not None:
                margins.append(_margins(out, y))
            seen = min(n, i + batch_size)
            if allowed is not None and seen - int(correct) > allowed:
                break
    model.train(was_training)
    return correct.item() / seen, loss.item() / seen, seen


def _batches(split: Split, batch_size: int, order: torch.Tensor | None):
    """(start, images, labels) of each batch: slices of the split as it lies (its layout kept, no copy), or the
    images `order` names, in that order."""
    for i in range(0, len(split), batch_size):
        if order is None:
            yield i, split.images[i:i + batch_size], split.labels[i:i + batch_size]
        else:
            idx = order[i:i + batch_size]
            yield i, split.images.index_select(0, idx), split.labels.index_select(0, idx)


def correct_needed(target: float, n: int) -> int:
    """The fewest correct predictions out of `n` whose accuracy (correct / n) meets `target`."""
    c = max(0, math.ceil(target * n))
    while c > 0 and (c - 1) / n >= target:  # ceil of a float product can overshoot by one
        c -= 1
    while c / n < target:
        c += 1
    return c


def _margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return (own - others).float()


def hardest_first(margins: torch.Tensor) -> torch.Tensor:
    """An order of the split, the images a model missed or nearly missed first (ascending margin)."""
    return torch.argsort(margins, stable=True)


class LastMargins:
    """Each held-out image's last known margin (0 for one not read yet): the order in which the passes that may
    stop early (the cadence's before the target, the snapshot search's) read the split, the images the latest
    evaluations missed or nearly missed first. Models a few steps apart miss much the same images, so a pass
    that will miss the target finds out after a fraction of the split."""

    def __init__(self, n: int, device: torch.device):
        self.margins = torch.zeros(n, device=device)

    def order(self) -> torch.Tensor:
        return hardest_first(self.margins)

    def record(self, read: list[torch.Tensor], order: torch.Tensor | None) -> None:
        """Keep the margins a pass read (per batch, as evaluate_toward and meets_target give them), in `order`
        (None: the split's own)."""
        if read:
            margins = torch.cat(read)
            self.margins[slice(len(margins)) if order is None else order[:len(margins)]] = margins


@torch.inference_mode()
def meets_target(model: nn.Module, split: Split, batch_size: int | None, autocast, target: float,
                 order: torch.Tensor | None = None, margins: list | None = None) -> bool:
    """Whether accuracy on the whole split meets `target`, the same answer as evaluate()'s, stopping as soon as
    the batches seen decide it: too many misses already, or enough hits already. The snapshot search asks only
    this, so a snapshot far from the target costs a fraction of a pass. `order` (a permutation of the split)
    changes only when the answer is known, never the answer: the search passes the images the evaluations
    before missed or nearly missed first, where this snapshot's misses most likely are, so a snapshot that
    misses the target shows it after a fraction of the split instead of most of it. `margins`, when given,
    receives the margin of each image read, per batch (as evaluate_toward's)."""
    was_training = model.training
    model.eval()
    batch_size = eval_batch_size(batch_size, split.images.device)
    n = len(split)
    needed = correct_needed(target, n)
    correct = 0
    try:
        with autocast:
            for i, images, labels in _batches(split, batch_size, order):
                out = model(images)
                correct += int((out.argmax(1) == labels).sum())
                if margins is not None:
                    margins.append(_margins(out, labels))
                seen = min(n, i + batch_size)
                if correct >= needed:
                    return True
                if correct + (n - seen) < needed:
                    return False
        return correct >= needed
    finally:
        model.train(was_training)


class SmoothedCrossEntropy(nn.Module):
    """Cross-entropy against label-smoothed targets, (1 - s) on the label and s / classes on every class: the
    loss nn.CrossEntropyLoss(label_smoothing=s) computes, its value and gradient, as one soft-target
    cross-entropy, where nn.CrossEntropyLoss's own smoothing runs several more operators forward and backward
    (a speedrun step at batch 256 took 1.015-1.02x as long with it, in bf16 on the AMX Xeon, 1.00-1.01x at 512:
    docs/reference/speedrun-cpu/flatten-xeon-amx.log)."""

    def __init__(self, label_smoothing: float):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        classes = logits.shape[1]
        targets = F.one_hot(labels, classes).float().mul_(1 - self.label_smoothing)  # fp32 whatever the logits
        return F.cross_entropy(logits.float(), targets.add_(self.label_smoothing / classes))


def training_loss(label_smoothing: float) -> nn.Module:
    """The training loss of a spec: cross-entropy, with label smoothing when it asks for it."""
    return SmoothedCrossEntropy(label_smoothing) if label_smoothing else nn.CrossEntropyLoss()


def training_step(forward: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, optimizer, autocast) -> torch.Tensor:
    """One step, the same wherever a step is taken (the timed loop, the warm-up, compile's warm-up and the
    dry-run estimate): forward under the precision's autocast, the loss in fp32 whatever the logits' precision,
    backward, the optimizer's update. Returns the loss, detached, left on the device (reading it syncs)."""
    with autocast:
        out = forward(x)
    loss = loss_fn(out.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@contextlib.contextmanager
def rate_scaled(optimizer, scale: float):
    """The optimizer's rates times `scale` for the steps taken inside, then exactly what they were (the
    schedule's values, not a product divided back)."""
    if scale == 1.0:
        yield
        return
    rates = [group["lr"] for group in optimizer.param_groups]
    for group, rate in zip(optimizer.param_groups, rates):
        group["lr"] = rate * scale
    try:
        yield
    finally:
        for group, rate in zip(optimizer.param_groups, rates):
            group["lr"] = rate


def _compile(spec: TrialSpec, model: nn.Module, train: Split, batch_sizes: set[int], loss_fn, autocast,
             device) -> tuple[nn.Module, float]:
    """torch.compile with its warm-up done and timed here, outside the clock: one training step per batch shape
    the run will see (the last batch of an epoch is often smaller, and a new shape recompiles), with a throwaway
    optimizer. Weights, BatchNorm buffers, gradients and random streams are restored so training starts from the
    same state."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    compiled = torch.compile(model)
    optimizer = make_optimizer(spec.optimizer, model.parameters(), spec.lr, spec.optimizer_args)
    with random_streams_kept(device), Stopwatch(device) as watch:
        for size in sorted(batch_sizes):
            training_step(compiled, train.images[:size], train.labels[:size], loss_fn, optimizer, autocast)
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    return compiled, watch.elapsed


def _warm_up(spec: TrialSpec, model: nn.Module, train: Split, batch_sizes: set[int], held_out: Split,
             loss_fn, autocast, device: torch.device) -> float:
    """Untimed warm-up on a throwaway copy: forward, backward and optimizer step for each batch shape the run
    will see, then one evaluation batch. It pays for oneDNN/cuDNN kernel creation and allocator growth, which
    otherwise land inside the first timed steps of a process. The copy (and its optimizer) is discarded and
    the random streams are restored, so the timed run is exactly what it would have been without it."""
    with random_streams_kept(device), Stopwatch(device) as watch:
        scratch = copy.deepcopy(model).train()
        optimizer = make_optimizer(spec.optimizer, scratch.parameters(), spec.lr, spec.optimizer_args)
        for size in sorted(batch_sizes, reverse=True):
            training_step(scratch, train.images[:size], train.labels[:size], loss_fn, optimizer, autocast)
        size = min(eval_batch_size(spec.eval_batch_size, device), len(held_out))
        evaluate(scratch, Split(held_out.images[:size], held_out.labels[:size]), size, autocast)
    return watch.elapsed


def run_trial(spec: TrialSpec, data: Data | None = None,
              progress: Callable[[Progress], None] | None = None) -> TrialResult:
    """Train one model as `spec` says and measure it. `data` may be passed to share one load.
    A spec's own thread count holds for this trial only (restored after, so it never leaks into the next trial
    or a notebook); without one, the trial runs with the count its executor set. The allocator setting
    (core.hardware.keep_freed_memory) is process-wide and stays."""
    with torch_threads(spec.threads) if spec.threads else contextlib.nullcontext():
        return _run_trial(spec, data, progress)


def _run_trial(spec: TrialSpec, data: Data | None, progress: Callable[[Progress], None] | None) -> TrialResult:
    keep_freed_memory()  # process-wide, once: activations are reused, not page-faulted in at every step
    load_start = load_average()  # what else the machine ran, at the start and the end (stored, shown)
    device = resolve_device(spec.device)
    if data is None:
        data = load(spec.dataset, val_size=spec.val_size)
    elif spec.val_size and (data.val is None or len(data.val) != spec.val_size):
        raise ConfigError(f"the data passed has no validation split of {spec.val_size} images")
    channels_last = uses_channels_last(spec.model, device, spec.channels_last)
    dtype = input_dtype(spec.precision, device)
    train = prepare_split(data.train, device, channels_last, dtype)
    test = prepare_split(data.test, device, channels_last, dtype)
    held_out = test if spec.eval_on == "test" else prepare_split(data.eval_split("val"), device, channels_last, dtype)

    entry = MODELS.get(spec.model)
    # The fit's images as loaded (fp32: a fit is no layer under autocast), on the device before any clock starts.
    fit_images = data.train.images[:entry.fit_images].to(device) if entry.fit is not None else None

    wall_start = now()
    torch.manual_seed(spec.seed)
    model = build_model(spec.model).to(device)
    fitting = Stopwatch(device)
    if entry.fit is not None:  # a data-dependent initialisation is training: on the run's clock and the training one
        with fitting:
            entry.fit(model, fit_images)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    n = len(train)
    h = horizon(spec, n)
    steps_per_epoch, total_steps = h.steps_per_epoch, h.total_steps
    optimizer = make_optimizer(spec.optimizer, model.parameters(), spec.lr, spec.optimizer_args)
    schedule = make_schedule(spec.schedule, optimizer, spec.schedule_args, h)
    loss_fn = training_loss(spec.label_smoothing)
    autocast = autocast_for(spec.precision, device)
    shuffle = torch.Generator().manual_seed(spec.seed)  # its own stream: model init can't shift the order
    weights = evaluation_weights(
        OPTIMIZERS.get(spec.optimizer).seam, model, optimizer, spec.ema, autocast=autocast,
        batches=lambda: (train.images[i:i + spec.batch_size]
                         for i in range(0, min(n, BN_BATCHES * spec.batch_size), spec.batch_size)))

    shapes = h.batch_sizes(spec.batch_size, n)  # what the warm-up (and compile) prepare, each once
    forward = model
    compile_seconds = 0.0
    if spec.compile:
        forward, compile_seconds = _compile(spec, model, train, shapes, loss_fn, autocast, device)
    warmup_seconds = _warm_up(spec, model, train, shapes, held_out, loss_fn, autocast, device)
    wall_start += compile_seconds + warmup_seconds  # reported on their own lines, not inside the run's wall time

    # Snapshots are evaluated on a second instance so the trained model is never touched by the search.
    searching = h.snapshot_every > 0
    probe = copy.deepcopy(model) if searching else None

    watch = Stopwatch(device)
    watch.elapsed = fitting.elapsed  # time to target counts the fit too
    eval_seconds = 0.0
    evaluations = 0
    curve: list[CurvePoint] = []
    epochs: list[EpochPoint] = []
    status = "budget"
    crossing: Crossing | None = None
    last_miss = Snapshot(0, 0.0)  # the start: the search's lower end until an evaluation misses
    priority = LastMargins(len(held_out), device)
    snapshots: list[Snapshot] = []  # taken since last_miss, while the target is not reached
    step = 0
    epoch_loss = torch.zeros((), device=device)
    interval_loss = torch.zeros((), device=device)  # summed since the previous evaluation
    interval_start = 0
    epoch_started = 0.0
    perm = None

    def next_multiple(every: int) -> int:
        return (step // every + 1) * every

    model.train()
    while step < total_steps:
        in_epoch = step % steps_per_epoch
        if in_epoch == 0:
            perm = torch.randperm(n, generator=shuffle).to(device)
            epoch_loss.zero_()
            epoch_started = watch.elapsed
        # Train, timed, up to the next point where something happens off the clock: the epoch end, the
        # budget, the divergence check and, until the target, the cadence evaluation and the next snapshot.
        epoch_end = step - in_epoch + steps_per_epoch
        stop = min(epoch_end, total_steps, next_multiple(h.check_every))
        if crossing is None:
            stop = min(stop, h.next_cadence(step))
        if crossing is None and searching:
            stop = min(stop, next_multiple(h.snapshot_every))
        chunk_loss = torch.zeros((), device=device)
        watch.start()
        i = in_epoch
        while i < in_epoch + stop - step:
            k = h.batches_at(step + i - in_epoch, stop)  # batches this optimizer step takes (grow_at)
            idx = perm[i * spec.batch_size:(i + k) * spec.batch_size]
            # index_select: the same rows as images[idx], by the kernel made for it, not advanced indexing's
            x, y = train.images.index_select(0, idx), train.labels.index_select(0, idx)
            with rate_scaled(optimizer, spec.grow_lr if k > 1 else 1.0):
                chunk_loss += training_step(forward, x, y, loss_fn, optimizer, autocast) * k  # a mean per batch
            weights.after_step()
            for _ in range(k):  # the schedule counts batches: the rate follows the images seen
                schedule.after_step()
            i += k
        watch.stop()
        step = stop
        epoch_loss += chunk_loss
        interval_loss += chunk_loss

        # Untimed from here on. A non-finite loss ends the trial here, even between evaluations.
        eval_start = now()
        train_loss = interval_loss.item() / (step - interval_start)
        if not math.isfinite(train_loss):
            status = "diverged"
            eval_seconds += now() - eval_start
            break
        at_eval = step in (epoch_end, total_steps) or (crossing is None and h.at_cadence(step))
        if not at_eval:
            if crossing is None and searching and step % h.snapshot_every == 0:
                with weights.swapped(model):  # prepared for evaluation only if the search reaches it
                    snapshots.append(Snapshot.of(model, step, watch.elapsed))
            eval_seconds += now() - eval_start
            continue
        # A cadence evaluation before the target only has to tell whether the target is met: it stops once it
        # cannot be (a partial point), reading first the images the evaluations before it missed or nearly
        # missed (`priority`), where its misses most likely are; so its accuracy over the images it read says
        # nothing of the split's, and the point stores none. Epoch ends and the budget's end always read the
        # whole split, in its order.
        full = step in (epoch_end, total_steps) or crossing is not None
        margins = [] if crossing is None else None  # this may be the hit: its margins order the search
        order = None if full else priority.order()
        with weights.evaluating(model):
            accuracy, eval_loss, seen = evaluate_toward(model, held_out, spec.eval_batch_size, autocast,
                                                        None if full else spec.target, margins, order)
        evaluations += 1
        if margins is not None:
            priority.record(margins, order)
        partial = seen < len(held_out)
        point = CurvePoint(step=step, epoch=step / steps_per_epoch, train_seconds=watch.elapsed,
                           wall_seconds=now() - wall_start, train_loss=train_loss,
                           eval_accuracy=None if partial else accuracy, eval_loss=None if partial else eval_loss,
                           lr=optimizer.param_groups[0]["lr"], seen=seen if partial else None)
        curve.append(point)
        interval_loss.zero_()
        interval_start = step
        if crossing is None:
            hit = Snapshot(step, watch.elapsed)
            if not partial and accuracy >= spec.target:
                # The search reads in the cadence's order too: the hit's margin for every image (it read them
                # all), then each snapshot's for the images it read, so once one near miss has been read the
                # next snapshot's misses, much the same images, come first.
                def meets(snapshot: Snapshot) -> bool:
                    probe.load_state_dict(snapshot.state)
                    weights.prepare(probe)
                    order, read = priority.order(), []
                    met = meets_target(probe, held_out, spec.eval_batch_size, autocast, spec.target, order, read)
                    priority.record(read, order)
                    return met

                crossing = search_crossing([last_miss, *snapshots, hit], meets)
                evaluations += crossing.evaluations
                status = "reached"
            else:
                last_miss = hit
            snapshots.clear()
        if step == epoch_end or step == total_steps:
            done = step - epoch_end + steps_per_epoch
            epochs.append(EpochPoint(epoch=step / steps_per_epoch, train_loss=epoch_loss.item() / done,
                                     eval_accuracy=accuracy, eval_loss=eval_loss,
                                     epoch_seconds=watch.elapsed - epoch_started))
            schedule.after_epoch(accuracy)
        if not math.isfinite(eval_loss):
            status = "diverged"
        eval_seconds += now() - eval_start
        if progress is not None:
            progress(Progress(step, total_steps, point.epoch, train_loss, point.eval_accuracy, watch.elapsed,
                              point.seen))
        if status == "diverged" or (crossing is not None and spec.stop_at_target):
            break

    # The final test evaluation is part of a run; reuse the last one when it was already on test (the same
    # weights: what evaluating() showed it is what finish() leaves, for the test, inference and saving).
    final_start = now()
    weights.finish(model)
    if status == "diverged":  # its weights are not finite: the last whole test evaluation it had, if it had one
        # `final_accuracy` is a test accuracy over the whole split: never a validation one, never a partial pass's.
        whole = [p for p in curve if not p.partial] if spec.eval_on == "test" else []
        final_accuracy, final_loss = (whole[-1].eval_accuracy, whole[-1].eval_loss) if whole else (None, None)
    elif spec.eval_on == "test" and curve and curve[-1].step == step:
        final_accuracy, final_loss = curve[-1].eval_accuracy, curve[-1].eval_loss
    else:
        final_accuracy, final_loss = evaluate(model, test, spec.eval_batch_size, autocast)
        evaluations += 1
    wall_seconds = now() - wall_start
    eval_seconds += now() - final_start

    reached = crossing.hit if crossing else None
    return TrialResult(
        spec=spec, status=status, final_accuracy=final_accuracy, final_loss=final_loss,
        time_to_target_s=reached.train_seconds if reached else None,
        steps_to_target=reached.step if reached else None,
        epochs_to_target=reached.step / steps_per_epoch if reached else None,
        target_resolution_steps=crossing.resolution_steps if crossing else None,
        target_resolution_s=crossing.resolution_seconds if crossing else None,
        steps=step, train_seconds=watch.elapsed, eval_seconds=eval_seconds, evaluations=evaluations,
        wall_seconds=wall_seconds, load_seconds=data.load_seconds, compile_seconds=compile_seconds,
        warmup_seconds=warmup_seconds, device=str(device),
        curve=curve, epochs=epochs, environment={**describe(), "device": str(device),
                                                    "precision": resolve_precision(spec.precision, device),
                                                    "load_start": load_start, "load_end": load_average()},
        model=model,
    )
