"""What a speedrun run spends outside its training steps, and what the ways of spending less save: the patch
whitening's fit (`whiten_first_conv`, reading the patches with F.unfold, as before 66c4354, against strided
views of the images, `image_patches`) and the final test evaluation with translation votes (one forward pass per
neighbour, as before and as an exported model still votes, against one pass over every view), at several
evaluation batch sizes. The
variants alternate within each round so that drift on a shared machine hits them all; the model is the
speedrun's, trained once by its recipe (the first seed given) so that the votes fall on the images a trained
model is unsure of. Both ways give the same patches and the same votes: checked before timing.

    python benchmarks/speedrun_overheads.py --rounds 20
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
import torch.nn.functional as F

from mnistbench import load, run_trial
from mnistbench.core.environment import describe
from mnistbench.core import models as models_module
from mnistbench.core.models import MODELS, TranslationVotes, build_model, image_patches
from mnistbench.core.trial import autocast_for, evaluate, input_dtype, prepare_split
from mnistbench.run.experiments import load_experiment


def unfold_patches(images: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """The fit's patches as read before 66c4354: F.unfold, then a transposed copy."""
    patches = F.unfold(images, conv.kernel_size, stride=conv.stride, padding=conv.padding)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="the seed the timed model is trained with")
    parser.add_argument("--eval-batch-sizes", default="1250,2500,5000,10000")
    args = parser.parse_args()

    experiment = load_experiment("speedrun")
    record = experiment.configs()[0]
    spec = experiment.spec_for(record, args.seed)
    data = load(spec.dataset)
    result = run_trial(spec, data)
    torch.set_num_threads(spec.threads)
    env = describe()
    print(f"# {env['cpu']}, {spec.threads} threads, torch {torch.__version__}, {result.environment['precision']}; "
          f"the speedrun recipe '{record.label}' ({spec.model}) trained with seed {args.seed}: "
          f"{result.wall_seconds:.3f} s a run, test accuracy {result.final_accuracy:.4f}")

    model = result.model.eval()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert torch.equal(unfold_patches(data.train.images[:100], conv), image_patches(data.train.images[:100], conv))
    device = torch.device("cpu")
    test = prepare_split(data.test, device, spec.channels_last, input_dtype(spec.precision, device))
    autocast = autocast_for(spec.precision, device)
    sizes = [int(s) for s in args.eval_batch_sizes.split(",")]
    votes = TranslationVotes._votes

    def evaluation(one_pass: bool, size: int):
        def run():
            TranslationVotes._votes = functools.partialmethod(votes, one_pass=one_pass)
            try:
                return evaluate(model, test, size, autocast)
            finally:
                TranslationVotes._votes = votes
        return run

    entry = MODELS.get(spec.model)
    fit_images = data.train.images[:entry.fit_images]
    scratch = build_model(spec.model)

    def fit(patches):
        def run():
            models_module.image_patches = patches
            try:
                entry.fit(scratch, fit_images)
            finally:
                models_module.image_patches = image_patches
        return run

    variants = {f"fit on {entry.fit_images} images, F.unfold patches": fit(unfold_patches),
                f"fit on {entry.fit_images} images, strided views (image_patches)": fit(image_patches)}
    for size in sizes:
        variants[f"test evaluation, batch {size}, votes pass per shift"] = evaluation(False, size)
        variants[f"test evaluation, batch {size}, votes in one pass"] = evaluation(True, size)
    for size in sizes:  # the same accuracy and loss either way
        a, b = evaluation(False, size)(), evaluation(True, size)()
        assert abs(a[0] - b[0]) < 2e-4, (size, a, b)

    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(2):  # untimed: kernels built, allocator grown
        for fn in variants.values():
            fn()
    for _ in range(args.rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    model.seen = model.revoted = 0
    evaluate(model, test, sizes[0], autocast)
    print(f"# votes on {model.revoted} of {model.seen} test images; medians of {args.rounds} interleaved rounds")
    for name, values in times.items():
        print(f"{name:58s} {statistics.median(values) * 1e3:7.2f} ms (min {min(values) * 1e3:.2f})")


if __name__ == "__main__":
    main()
