"""How the speedrun recipe was chosen: candidate models and recipes trained on a 10,000-image validation split
of the training set with the tuning seeds only (never the test set, never a reported seed). Each line of
explore.log is one candidate: mean validation accuracy over the seeds, and the mean wall time of a run.

    python docs/reference/speedrun-cpu/explore.py --cands w24 --budgets 200 --seeds 10 --set batch_size=256 --set lr=0.015
"""
import argparse, statistics

from torch import nn
from mnistbench import load, run_trial
from mnistbench.core.models import (EIGHT_NEIGHBOURS, FOUR_NEIGHBOURS, FP32, MODELS, ModelEntry, TranslationVotes,
                                    build_model, flops_per_image, speedrun_cnn, whiten_first_conv)
from mnistbench.run.experiments import load_experiment

class Crop(nn.Module):
    """Drops `border` pixels on each side, inside the model (so evaluation and export see it too, on the clock)."""

    def __init__(self, border):
        super().__init__()
        self.border = border

    def forward(self, x):
        b = self.border
        return x[..., b:x.shape[-2] - b, b:x.shape[-1] - b]


def candidate(c1=16, c2=32, hidden=128, stride2=False, pool_early=False, crop=0, bias=True):
    """The speedrun model's shape with one thing changed: widths, a stride-2 second conv (no pool), pooling
    the first conv's 12x12 map before the second conv (padded) and after it, or cropping the image's border, or
    convolutions without biases. The second conv is built first, so a candidate's weights for a seed differ
    from the built-in model's: compare means over seeds, not seed by seed."""
    if stride2:
        second, side = [nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=bias), nn.ReLU()], 6    # 12 -> 6
    elif pool_early:
        second, side = [nn.Conv2d(c1, c2, 3, padding=1, bias=bias), nn.MaxPool2d(2), nn.ReLU()], 3    # 6 -> 3
    else:
        second, side = [nn.Conv2d(c1, c2, 3, bias=bias), nn.MaxPool2d(2), nn.ReLU()], 5    # 12 -> 10 -> 5
    if crop:
        side = ((28 - 2 * crop - 5) // 2 + 1 - 2) // 2  # 24 -> 10 -> 8 -> 4
    first = ([Crop(crop)] if crop else []) + [nn.Conv2d(1, c1, 5, stride=2, bias=bias)]
    first += ([nn.MaxPool2d(2)] if pool_early else []) + [nn.ReLU()]
    return nn.Sequential(*first, *second, nn.Flatten(), nn.Linear(c2 * side * side, hidden), nn.ReLU(),
                         nn.Linear(hidden, 10))


CANDS = {"c12w24": dict(c1=12, c2=24), "w20": dict(c2=20), "s2": dict(stride2=True), "poolearly": dict(pool_early=True),
         "w24": dict(c2=24), "h64": dict(hidden=64), "s2w48": dict(c2=48, stride2=True), "c1w12": dict(c1=12),
         "crop2": dict(c2=24, crop=2), "crop2w32": dict(c2=32, crop=2),
         "nobias": dict(c2=24, bias=False)}
for k, kwargs in CANDS.items():
    MODELS.add("x-" + k, ModelEntry(lambda kwargs=kwargs: candidate(**kwargs), k, "x-" + k))


def whitened(votes=True, frozen=True, shifts=FOUR_NEIGHBOURS, margin=1.0, **shape):
    """The speedrun model (or a candidate's shape) with a whitened first conv (frozen or trained from there),
    with or without votes (of `shifts`, on images whose margin is below `margin`)."""
    net = candidate(**shape, bias=False) if shape else speedrun_cnn()
    net[0].weight.requires_grad_(not frozen)
    return TranslationVotes(net, margin, shifts) if votes else net


# Round 10: a patch-whitening first layer (fit on the first N training images, on the clock) and votes.
# ("speedrun-whitened" fit on 5,000 images in round 10, on 1,000 since: chosen there)
for k, kwargs, images in [("white5k", {}, 5000), ("white2k", {}, 2000), ("white1k", {}, 1000),
                          ("whitenovote", dict(votes=False), 5000), ("whitetrained", dict(frozen=False), 5000)]:
    MODELS.add("x-" + k, ModelEntry(lambda kwargs=kwargs: whitened(**kwargs), k, "x-" + k,
                                    fit=whiten_first_conv, fit_images=images))
# Round 12: no max-pool (a quarter of a step in bf16 on the AMX Xeon): a stride-2 second conv, wider to make up.
for c2 in (24, 32, 48):
    MODELS.add(f"x-whites2c{c2}", ModelEntry(lambda c2=c2: whitened(c2=c2, stride2=True), f"whites2c{c2}",
                                             f"x-whites2c{c2}", fit=whiten_first_conv))
# Round 13: eight-neighbour votes with what might buy the last 0.03 point at 130-140 steps.
for k, kwargs, eps in [("white8", {}, 0.1), ("white8m2", dict(margin=2.0), 0.1), ("white8e1", {}, 1.0),
                       ("white8e001", {}, 0.01), ("white8h256", dict(c2=24, hidden=256), 0.1)]:
    MODELS.add("x-" + k, ModelEntry(lambda kwargs=kwargs: whitened(shifts=EIGHT_NEIGHBOURS, **kwargs), k, "x-" + k,
                                    fit=lambda m, x, eps=eps: whiten_first_conv(m, x, eps)))
# Round 14: fewer whitening filters (12: conv2 reads a quarter less), a zero-initialised output layer.
def zero_head(net):
    head = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)
    return net


for k, build in [("whitec12", lambda: whitened(c1=12, c2=24)), ("whitez", lambda: zero_head(whitened())),
                 ("whitec12z", lambda: zero_head(whitened(c1=12, c2=24))),
                 ("white8c12", lambda: whitened(shifts=EIGHT_NEIGHBOURS, c1=12, c2=24))]:
    MODELS.add("x-" + k, ModelEntry(build, k, "x-" + k, fit=whiten_first_conv))
# Round 17: cheaper steps at the record's shape: no dense biases (fewer parameters to update and gradients to
# sum), the output layer in fp32 (no bf16 casts of its weights and gradients each step; FP32 is the models'
# module since, the same code as round 17's copy here).
def record_shape(dense_bias=True, fp32_out=False, votes=EIGHT_NEIGHBOURS[:4]):
    out = nn.Linear(128, 10, bias=dense_bias)
    net = nn.Sequential(nn.Conv2d(1, 16, 5, stride=2, bias=False), nn.ReLU(),
                        nn.Conv2d(16, 24, 3, bias=False), nn.MaxPool2d(2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(600, 128, bias=dense_bias), nn.ReLU(), FP32(out) if fp32_out else out)
    net[0].weight.requires_grad_(False)
    return TranslationVotes(net, shifts=votes)


for k, kwargs in [("rec", {}), ("recnb", dict(dense_bias=False)), ("rec32", dict(fp32_out=True)),
                  ("recnb32", dict(dense_bias=False, fp32_out=True)),
                  ("recnb32v8", dict(dense_bias=False, fp32_out=True, votes=EIGHT_NEIGHBOURS))]:
    MODELS.add("x-" + k, ModelEntry(lambda kwargs=kwargs: record_shape(**kwargs), k, "x-" + k, fit=whiten_first_conv))
# Round 18: the image's 2-pixel border cropped inside the model (24x24 in: 10 -> 8 -> 4 maps, 35% fewer MACs),
# whitened (fit on the cropped images) with votes, the dense layers without biases, the output layer in fp32.
def cropped(c2=24, border=2, hidden=128, votes=FOUR_NEIGHBOURS):
    side = ((28 - 2 * border - 5) // 2 + 1 - 2) // 2
    net = nn.Sequential(Crop(border), nn.Conv2d(1, 16, 5, stride=2, bias=False), nn.ReLU(),
                        nn.Conv2d(16, c2, 3, bias=False), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(c2 * side * side, hidden, bias=False), nn.ReLU(), FP32(nn.Linear(hidden, 10, bias=False)))
    net[1].weight.requires_grad_(False)
    return TranslationVotes(net, shifts=votes)


for k, kwargs in [("crop2", {}), ("crop2w32", dict(c2=32)), ("crop2w32v8", dict(c2=32, votes=EIGHT_NEIGHBOURS)),
                  ("crop2v8", dict(votes=EIGHT_NEIGHBOURS)), ("crop2w40", dict(c2=40)), ("crop2w48", dict(c2=48))]:
    MODELS.add("x-w" + k, ModelEntry(lambda kwargs=kwargs: cropped(**kwargs), k, "x-w" + k,
                                     fit=lambda m, x: whiten_first_conv(m, x[..., 2:-2, 2:-2])))
# Round 19: the trained layers' initial scale (PyTorch's default draws a third of the variance Kaiming's ReLU
# rule would): Kaiming-normal for the second conv and the hidden layer, or the default times 2.
def rescaled(kaiming=True, gain=1.0):
    model = whitened()
    trained = [m for m in model.net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad]
    for m in trained[:-1] if kaiming else trained:  # Kaiming's rule is for layers a ReLU follows
        if kaiming:
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        else:
            m.weight.data.mul_(gain)
    return model


for k, kwargs in [("whiteki", {}), ("whitex2", dict(kaiming=False, gain=2.0))]:
    MODELS.add("x-" + k, ModelEntry(lambda kwargs=kwargs: rescaled(**kwargs), k, "x-" + k, fit=whiten_first_conv))
MODELS.add("x-votes", ModelEntry(lambda: TranslationVotes(speedrun_cnn()), "votes", "x-votes"))

p = argparse.ArgumentParser()
p.add_argument("--cands", default="speedrun")
p.add_argument("--budgets", default="150")
p.add_argument("--seeds", type=int, default=5)
p.add_argument("--set", action="append", default=[])
p.add_argument("--select", type=float, default=None, help="round 15: train on the hardest KEEP of each batch")
p.add_argument("--topk", type=float, default=None, help="round 16: the loss of the hardest KEEP of each batch")
p.add_argument("--time", help="round 24: time these NAME:STEPS runs against each other, seeds alternating")
a = p.parse_args()
if a.select is not None:
    # Round 15 (a prototype of selective backprop, "biggest losers"): each step reads its batch in inference,
    # on the clock, and trains on the fraction `--select` of it with the highest loss.
    import torch
    import torch.nn.functional as F
    from mnistbench.core import trial
    plain_step = trial.training_step

    def selective_step(forward, x, y, loss_fn, optimizer, autocast):
        with torch.no_grad(), autocast:
            losses = F.cross_entropy(forward(x).float(), y, reduction="none")
        keep = losses.topk(round(a.select * len(x))).indices
        return plain_step(forward, x.index_select(0, keep), y.index_select(0, keep), loss_fn, optimizer, autocast)
    trial.training_step = selective_step
if a.topk is not None:
    # Round 16: the batch's forward and backward as they are, the loss averaged over the fraction `--topk` of
    # the batch with the highest loss (the rest add nothing to the gradient, and cost what they cost).
    import torch
    from mnistbench.core import trial
    plain_step = trial.training_step

    def topk_step(forward, x, y, loss_fn, optimizer, autocast):
        def topk_loss(out, y):
            losses = F.cross_entropy(out, y, reduction="none", label_smoothing=loss_fn.label_smoothing)
            return losses.topk(round(a.topk * len(y))).values.mean()
        return plain_step(forward, x, y, topk_loss, optimizer, autocast)
    import torch.nn.functional as F
    trial.training_step = topk_step
base = dict(load_experiment("speedrun").trials(1))["speedrun"]
over = {}
if any(kv.startswith("optimizer=") for kv in a.set):
    over["optimizer_args"] = {}  # another optimizer: the base recipe's Adam options do not carry over
if any(kv.startswith("schedule=") for kv in a.set):
    over["schedule_args"] = {}  # another schedule: the same
for kv in a.set:  # key=value, nested as schedule_args.warmup_fraction=0.1, lists as optimizer_args.betas=0.8,0.95
    key, value = kv.split("=")
    try:
        parsed = [float(v) for v in value.split(",")] if "," in value else float(value)
    except ValueError:  # a name: optimizer=muon, schedule=constant
        parsed = value
    if "." in key:
        outer, inner = key.split(".")
        over[outer] = {**(over.get(outer) if outer in over else getattr(base, outer)), inner: parsed}
    elif isinstance(parsed, str):
        over[key] = parsed
    else:
        default = getattr(base, key)
        over[key] = type(default)(parsed) if default is not None else int(parsed) if parsed == int(parsed) else parsed
if a.time:
    # Wall times only (accuracies are not read): each candidate's run (model creation + training + the final test
    # evaluation, as the speedrun times it) on seeds 30000 onwards, alternating, so that drift hits them all.
    runs = [(c.split(":")[0], int(c.split(":")[1])) for c in a.time.split(",")]
    data = load("mnist")

    def timed(name, steps, seed):
        model = name if name in MODELS else "x-" + name
        return run_trial(base.model_copy(update={"model": model, "steps": steps, "seed": seed, **over}), data)

    for name, steps in runs:
        timed(name, steps, 10_000)  # warm
    walls = {run: [] for run in runs}
    for seed in range(30_000, 30_000 + a.seeds):
        for run in runs:
            walls[run].append(timed(*run, seed).wall_seconds)
    first = statistics.median(walls[runs[0]])
    for (name, steps), w in walls.items():
        print(f"{name:20s} {steps:4d} steps: wall median {statistics.median(w):.3f} s "
              f"({first / statistics.median(w):.3f}x the first), {a.seeds} seeds interleaved", flush=True)
    raise SystemExit
data = load("mnist", val_size=10_000)
run_trial(base.model_copy(update={"seed": 10_000, "eval_on": "val", "val_size": 10_000}), data)  # warm
for c in a.cands.split(","):
    name = c if c in MODELS else "x-" + c
    mac = flops_per_image(build_model(name)) / 2
    for b in [int(x) for x in a.budgets.split(",")]:
        accs, walls = [], []
        for seed in range(a.seeds):
            t = base.model_copy(update={"model": name, "steps": b, "epochs": None, "seed": seed, "eval_on": "val",
                                        "val_size": 10_000, "eval_every": 0, **over})
            r = run_trial(t, data)
            accs.append(r.curve[-1].eval_accuracy); walls.append(r.wall_seconds)
        print(f"{c:10s} {mac/1e3:5.0f}k MAC {over}{'' if a.select is None else f' select {a.select}'}{'' if a.topk is None else f' topk {a.topk}'} steps {b:4d}: val {statistics.fmean(accs):.4%} "
              f"(min {min(accs):.4f}, {sum(x >= .99 for x in accs)}/{len(accs)}) wall {statistics.fmean(walls):.2f} s "
              f"(min {min(walls):.2f})", flush=True)
