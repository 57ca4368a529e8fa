"""How the speedrun recipe was chosen: candidate models and recipes trained on a 10,000-image validation split
of the training set with the tuning seeds only (never the test set, never a reported seed). Each line of
explore.log is one candidate: mean validation accuracy over the seeds, and the mean wall time of a run.

    python docs/reference/speedrun-cpu/explore.py --cands w24 --budgets 200 --seeds 10 --set batch_size=256 --set lr=0.015
"""
import argparse, statistics

from torch import nn
from mnistbench import load, run_trial
from mnistbench.core.models import MODELS, ModelEntry, flops_per_image, build_model
from mnistbench.run.experiments import load_experiment

def s2():
    return nn.Sequential(nn.Conv2d(1, 16, 5, stride=2), nn.ReLU(),               # 12
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),   # 6
                         nn.Flatten(), nn.Linear(32 * 36, 128), nn.ReLU(), nn.Linear(128, 10))
def poolearly():
    return nn.Sequential(nn.Conv2d(1, 16, 5, stride=2), nn.MaxPool2d(2), nn.ReLU(),   # 12 -> 6
                         nn.Conv2d(16, 32, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),  # 6 -> 3
                         nn.Flatten(), nn.Linear(32 * 9, 128), nn.ReLU(), nn.Linear(128, 10))
def w24():
    return nn.Sequential(nn.Conv2d(1, 16, 5, stride=2), nn.ReLU(),
                         nn.Conv2d(16, 24, 3), nn.MaxPool2d(2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(24 * 25, 128), nn.ReLU(), nn.Linear(128, 10))
def h64():
    return nn.Sequential(nn.Conv2d(1, 16, 5, stride=2), nn.ReLU(),
                         nn.Conv2d(16, 32, 3), nn.MaxPool2d(2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(32 * 25, 64), nn.ReLU(), nn.Linear(64, 10))
def s2w48():
    return nn.Sequential(nn.Conv2d(1, 16, 5, stride=2), nn.ReLU(),
                         nn.Conv2d(16, 48, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(48 * 36, 128), nn.ReLU(), nn.Linear(128, 10))
def c1w8():
    return nn.Sequential(nn.Conv2d(1, 12, 5, stride=2), nn.ReLU(),
                         nn.Conv2d(12, 32, 3), nn.MaxPool2d(2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(32 * 25, 128), nn.ReLU(), nn.Linear(128, 10))
def c12w24():
    return nn.Sequential(nn.Conv2d(1, 12, 5, stride=2), nn.ReLU(),
                         nn.Conv2d(12, 24, 3), nn.MaxPool2d(2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(24 * 25, 128), nn.ReLU(), nn.Linear(128, 10))
def w20():
    return nn.Sequential(nn.Conv2d(1, 16, 5, stride=2), nn.ReLU(),
                         nn.Conv2d(16, 20, 3), nn.MaxPool2d(2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(20 * 25, 128), nn.ReLU(), nn.Linear(128, 10))
CANDS = {"c12w24": c12w24, "w20": w20, "s2": s2, "poolearly": poolearly, "w24": w24, "h64": h64, "s2w48": s2w48, "c1w12": c1w8}
for k, f in CANDS.items():
    MODELS.add("x-" + k, ModelEntry(f, k, "x-" + k))

p = argparse.ArgumentParser()
p.add_argument("--cands", default="speedrun")
p.add_argument("--budgets", default="150")
p.add_argument("--seeds", type=int, default=5)
p.add_argument("--set", action="append", default=[])
a = p.parse_args()
base = dict(load_experiment("speedrun").trials(1))["speedrun"]
over = {}
for kv in a.set:  # key=value, nested as schedule_args.warmup_fraction=0.1, lists as optimizer_args.betas=0.8,0.95
    key, value = kv.split("=")
    parsed = [float(v) for v in value.split(",")] if "," in value else float(value)
    if "." in key:
        outer, inner = key.split(".")
        over[outer] = {**(over.get(outer) or getattr(base, outer)), inner: parsed}
    else:
        over[key] = type(getattr(base, key))(parsed) if getattr(base, key) is not None else int(parsed)
data = load("mnist", val_size=10_000)
run_trial(base.model_copy(update={"seed": 10_000, "eval_on": "val", "val_size": 10_000}), data)  # warm
for c in a.cands.split(","):
    name = c if c in ("speedrun",) else "x-" + c
    mac = flops_per_image(build_model(name)) / 2
    for b in [int(x) for x in a.budgets.split(",")]:
        accs, walls = [], []
        for seed in range(a.seeds):
            t = base.model_copy(update={"model": name, "steps": b, "epochs": None, "seed": seed, "eval_on": "val",
                                        "val_size": 10_000, "eval_every": 0, **over})
            r = run_trial(t, data)
            accs.append(r.curve[-1].eval_accuracy); walls.append(r.wall_seconds)
        print(f"{c:10s} {mac/1e3:5.0f}k MAC {over} steps {b:4d}: val {statistics.fmean(accs):.4%} "
              f"(min {min(accs):.4f}, {sum(x >= .99 for x in accs)}/{len(accs)}) wall {statistics.fmean(walls):.2f} s "
              f"(min {min(walls):.2f})", flush=True)
