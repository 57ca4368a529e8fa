"""Which translations the speedrun's votes should read, and for which images: the recipe trained on the training
set less a 10,000-image validation split with the tuning seeds 0-9, then its network's validation logits for the
image and its translations, combined every way compared here (never the test set, never a reported seed). Each
line of explore.log's round 12 is one budget: mean validation accuracy over the seeds of each way of voting.

    python docs/reference/speedrun-cpu/votes.py 130 140 150
"""
import statistics
import sys

import torch

from mnistbench import load, run_trial
from mnistbench.run.experiments import load_experiment

NEIGHBOURS = [(1, 0), (-1, 0), (0, 1), (0, -1)]
DIAGONALS = [(1, 1), (1, -1), (-1, 1), (-1, -1)]
TWO_PIXELS = [(2, 0), (-2, 0), (0, 2), (0, -2)]
WAYS = {"no votes": ([], 0), "4 neighbours, margin < 1": (NEIGHBOURS, 1), "4, margin < 2": (NEIGHBOURS, 2),
        "8 neighbours, margin < 1": (NEIGHBOURS + DIAGONALS, 1), "8, margin < 2": (NEIGHBOURS + DIAGONALS, 2),
        "4 + 2-pixel, margin < 1": (NEIGHBOURS + TWO_PIXELS, 1),
        "all 12, margin < 2": (NEIGHBOURS + DIAGONALS + TWO_PIXELS, 2),
        "4, every image": (NEIGHBOURS, float("inf")), "8, every image": (NEIGHBOURS + DIAGONALS, float("inf"))}

torch.set_num_threads(2)
data = load("mnist", val_size=10_000)
recipe = dict(load_experiment("speedrun").trials(1))["speedrun"]
images = data.val.images.contiguous(memory_format=torch.channels_last)
for steps in map(int, sys.argv[1:]):
    accuracies, unsure_share = {way: [] for way in WAYS}, []
    for seed in range(10):
        result = run_trial(recipe.model_copy(update={"steps": steps, "seed": seed, "eval_on": "val",
                                                     "val_size": 10_000}), data)
        net = result.model.net.eval()  # the votes' network, without them: every way is combined here
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = {(0, 0): net(images).float()}
            for shift in NEIGHBOURS + DIAGONALS + TWO_PIXELS:
                logits[shift] = net(torch.roll(images, shift, (-2, -1))).float()
        top2 = logits[(0, 0)].topk(2, dim=1).values
        margin = top2[:, 0] - top2[:, 1]
        unsure_share.append((margin < 1).float().mean().item())
        for way, (shifts, below) in WAYS.items():
            unsure = margin < below
            votes = sum(logits[s] for s in [(0, 0), *shifts]) / (1 + len(shifts))
            out = torch.where(unsure[:, None], votes, logits[(0, 0)])
            accuracies[way].append((out.argmax(1) == data.val.labels).float().mean().item())
    print(f"votes at {steps} steps (lr {recipe.lr}): "
          + "; ".join(f"{way} {statistics.fmean(a):.3%}" for way, a in accuracies.items())
          + f" (margin < 1: {statistics.fmean(unsure_share):.1%} of the images)", flush=True)
