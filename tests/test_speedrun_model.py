"""The speedrun's whitened model: its first layer is fit from the training images on the run's clock, whitens the
patches it reads, and never trains; translation votes change only the images the model is unsure of, the same
in eager and traced form; a step's FLOPs count only the gradients a step computes."""

from __future__ import annotations

import time
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistbench import load, make_spec, run_trial
from mnistbench.core.models import (MODELS, MapsLinear, TranslationVotes, build_model, flops_per_image,
                                    image_patches, speedrun_cnn, step_flops_per_image, whiten_first_conv)
from mnistbench.core.recipes import make_optimizer


@pytest.fixture
def data(synthetic_name):
    return load(synthetic_name)


def correlated_images(n: int = 400) -> torch.Tensor:
    """Smooth images: neighbouring pixels correlate, as in real ones, so whitening has work to do."""
    torch.manual_seed(0)
    return nn.functional.avg_pool2d(torch.randn(n, 1, 32, 32), 5, stride=1)  # 28x28


def test_whitening_decorrelates_the_patches_it_was_fit_on_to_unit_variance():
    model = speedrun_cnn()
    images = correlated_images()
    whiten_first_conv(model, images, eps=1e-6)
    conv = model[0]
    out = conv(images).detach()  # (n, 16, 12, 12): 8 filters and their negatives
    first = out[:, :8].permute(0, 2, 3, 1).reshape(-1, 8)
    cov = first.T @ first / len(first)
    assert torch.allclose(cov, torch.eye(8), atol=1e-3)
    assert torch.equal(conv.weight[8:], -conv.weight[:8])
    leading = conv.weight[:8].flatten(1)  # an eigenvector's sign is fixed: its largest entry positive
    assert (leading.gather(1, leading.abs().argmax(1, keepdim=True)) > 0).all()
    raw = nn.functional.unfold(images, 5, stride=2).transpose(1, 2).reshape(-1, 25)
    assert not torch.allclose(raw.T @ raw / len(raw), torch.eye(25), atol=0.1)  # there was something to undo


def test_a_whitened_first_conv_is_fit_on_the_clock_from_the_training_images_and_never_trains(
        synthetic_name, monkeypatch):
    fits = []

    def slow_whitening(model, images):  # a fit that takes 0.3 s must show in the run's and the training's time
        fits.append(images)
        time.sleep(0.3)
        whiten_first_conv(model, images)

    entry = MODELS.get("speedrun-whitened")
    monkeypatch.setitem(MODELS.entries, "speedrun-whitened", type(entry)(**{**entry.__dict__, "fit": slow_whitening}))
    data = load(synthetic_name, val_size=100)  # evaluating on validation: the fit still reads training images
    spec = make_spec(dataset=synthetic_name, model="speedrun-whitened", optimizer="adam", lr=3e-3, steps=6,
                     batch_size=32, threads=1, eval_every=0, eval_on="val", val_size=100, target=0.01)
    result = run_trial(spec, data)
    assert len(fits) == 1 and torch.equal(fits[0], data.train.images[:entry.fit_images])
    assert result.train_seconds >= 0.3 and result.wall_seconds >= result.train_seconds
    assert result.time_to_target_s >= 0.3  # reaching any target took the fit too
    expected = build_model("speedrun-whitened")
    whiten_first_conv(expected, data.train.images[:entry.fit_images])
    first = result.model.net[0].weight
    assert not first.requires_grad and first.grad is None
    assert torch.allclose(first, expected.net[0].weight, atol=1e-5)  # the trial sums on one thread


@pytest.mark.parametrize("grouped", [False, True])
def test_optimizers_leave_frozen_weights_out(grouped):
    model = build_model("speedrun-whitened")
    params = [{"params": list(model.parameters()), "weight_decay": 0.0}] if grouped else model.parameters()
    optimizer = make_optimizer("adamw", params, 1e-3, {})
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.net[0].weight) not in held
    assert held == {id(p) for p in model.parameters() if p.requires_grad}


class Marked(nn.Module):
    """Logits read from a marker pixel: 1 a sure image (margin 5), 2 an unsure one (margin 0.5); a translated
    image has lost its marker and votes for class 2."""

    def forward(self, x):
        marker = x[:, 0, 0, 0]
        sure, unsure = torch.tensor([5.0, 0.0, 0.0]), torch.tensor([0.5, 0.0, 0.0])
        moved = torch.tensor([0.0, 0.0, 4.0])
        return torch.where((marker == 1)[:, None], sure, torch.where((marker == 2)[:, None], unsure, moved))


def test_votes_change_only_the_images_the_model_is_unsure_of():
    model = TranslationVotes(Marked())
    x = torch.zeros(2, 1, 5, 5)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 1, 2
    model.train()
    assert torch.equal(model(x), Marked()(x))  # training sees the network's own logits
    model.eval()
    out = model(x)
    assert torch.equal(out[0], torch.tensor([5.0, 0.0, 0.0]))  # sure: untouched
    # unsure: the mean of itself and its four translations, each of which moved the marker away
    assert torch.allclose(out[1], torch.tensor([0.5, 0.0, 16.0]) / 5)
    assert (model.seen, model.revoted) == (2, 1)
    sure = x[:1]
    assert torch.equal(model(sure), Marked()(sure)) and (model.seen, model.revoted) == (3, 1)  # nothing to vote on


@pytest.mark.parametrize("channels,kernel,stride,padding", [(1, 5, 2, 0), (3, 3, 1, 1), (2, (3, 5), (2, 1), (0, 2))])
def test_image_patches_are_what_unfold_reads(channels, kernel, stride, padding):
    conv = nn.Conv2d(channels, 4, kernel, stride=stride, padding=padding)
    images = torch.randn(3, channels, 11, 13)
    unfolded = F.unfold(images, conv.kernel_size, stride=conv.stride, padding=conv.padding)
    assert torch.equal(image_patches(images, conv), unfolded.transpose(1, 2).reshape(-1, unfolded.shape[1]))


@pytest.mark.parametrize("channels_last", [True, False])
def test_maps_linear_gives_a_seed_the_function_of_flatten_and_linear(channels_last):
    """The speedrun models' dense layer reads channels-last maps without a copy; for a seed it computes what
    nn.Flatten + nn.Linear built from the same seed computed, in either layout."""
    torch.manual_seed(3)
    maps_layer = MapsLinear(24, 5, 128, bias=True)
    torch.manual_seed(3)
    reference = nn.Sequential(nn.Flatten(), nn.Linear(24 * 5 * 5, 128))
    maps = torch.randn(7, 24, 5, 5)
    if channels_last:
        maps = maps.to(memory_format=torch.channels_last)
    assert torch.allclose(maps_layer(maps), reference(maps), atol=1e-5)
    torch.manual_seed(3)
    lean = build_model("speedrun-lean").eval()
    torch.manual_seed(3)
    nhwc = build_model("speedrun-nhwc").eval()
    images = torch.randn(5, 1, 28, 28)
    if channels_last:
        lean, nhwc = (m.to(memory_format=torch.channels_last) for m in (lean, nhwc))
        images = images.to(memory_format=torch.channels_last)
    assert torch.allclose(nhwc(images), lean(images), atol=1e-5)
    with pytest.raises(RuntimeError):  # weights saved in the other order are refused, not misread
        nhwc.load_state_dict(lean.state_dict())


@pytest.mark.parametrize("name", ["speedrun", "speedrun-whitened", "speedrun-lean"])
def test_a_seed_gives_the_speedrun_models_the_weights_it_always_gave(name):
    """A seed draws the initial weights in the layers' order, as the records' models were built before 87dc007
    (which drew the dense layer's first): a stored trial or a record's seed means the same starting point
    whatever variant was added since."""
    dense_bias = name != "speedrun-lean"
    torch.manual_seed(11)
    as_built = [nn.Conv2d(1, 16, 5, stride=2, bias=False), nn.Conv2d(16, 24, 3, bias=False),
                nn.Linear(600, 128, bias=dense_bias), nn.Linear(128, 10, bias=dense_bias)]
    torch.manual_seed(11)
    model = build_model(name)
    weights = [p for p in model.parameters() if p.dim() > 1]
    assert [tuple(w.shape) for w in weights] == [(16, 1, 5, 5), (24, 16, 3, 3), (128, 600), (10, 128)]
    for ours, built in zip(weights, (layer.weight for layer in as_built)):
        assert torch.equal(ours, built)


def test_votes_are_each_images_own_translations():
    """The views of every unsure image go through the network in one pass: each image's vote is the mean of its
    own logits and its own translations' (computed here one translation at a time), never another image's."""
    torch.manual_seed(0)
    model = build_model("speedrun-lean").eval()
    x = torch.randn(32, 1, 28, 28)
    top2 = model.net(x).topk(2, dim=1).values
    model.margin = (top2[:, 0] - top2[:, 1]).median().item()
    out = model(x)
    unsure = (top2[:, 0] - top2[:, 1] < model.margin).nonzero().squeeze(1)
    assert len(unsure) > 4
    for i in unsure:
        views = [model.net(x[i:i + 1])] + [model.net(torch.roll(x[i:i + 1], s, (-2, -1))) for s in model.shifts]
        assert torch.allclose(out[i], torch.cat(views).mean(0), atol=1e-5)


@pytest.mark.parametrize("name", ["speedrun-whitened", "speedrun-lean", "speedrun-nhwc"])
@pytest.mark.parametrize("how", ["torch.export", "jit.trace"])
def test_traced_votes_give_the_eager_votes(how, name):
    """A tracer (torch.export, behind the pt2 and ONNX exports, or jit.trace) sees one graph: every image's views,
    kept only where the model is unsure."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(64, 1, 28, 28)
    top2 = model.net(x).topk(2, dim=1).values
    model.margin = (top2[:, 0] - top2[:, 1]).median().item()  # untrained: half the images sure, half not
    eager = model(x)
    assert 16 < model.revoted < 48
    if how == "torch.export":
        batch = torch.export.Dim("batch", min=1, max=1024)
        traced = torch.export.export(model, (x[:2],), dynamic_shapes=({0: batch},)).module()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the graph is shape-free by construction
            warnings.simplefilter("ignore", DeprecationWarning)  # jit.trace is on its way out; models still meet it
            traced = torch.jit.trace(model, x)
    assert torch.allclose(traced(x), eager, atol=1e-5)


def test_a_step_counts_the_gradients_it_computes():
    plain, frozen = build_model("speedrun"), build_model("speedrun-whitened")
    forward = flops_per_image(plain)
    assert flops_per_image(frozen) == forward  # the votes are counted from the data, not here
    first = 2 * 25 * 16 * 12 * 12  # the first conv's forward FLOPs per image
    # Every layer: forward, its weights' gradient, its input's, except the images' (they need none).
    assert step_flops_per_image(plain) == 3 * forward - first
    # Frozen first conv: its forward only; the second conv's input then needs no gradient either.
    second = 2 * 9 * 16 * 24 * 10 * 10
    assert step_flops_per_image(frozen) == 3 * forward - 2 * first - second


@pytest.mark.parametrize("shape", [(5, 24, 10, 10), (3, 8, 7, 9)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_the_speedrun_pool_evaluates_exactly_as_max_pool_and_trains_through_it(shape, channels_last):
    from mnistbench.core.models import MaxPool2x2

    x = torch.randn(shape).to(torch.bfloat16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.equal(MaxPool2x2().eval()(x), torch.nn.functional.max_pool2d(x, 2))
    x.requires_grad_(True)
    MaxPool2x2().train()(x).sum().backward()
    assert int(x.grad.float().sum()) == x.shape[0] * x.shape[1] * (x.shape[2] // 2) * (x.shape[3] // 2)  # one per window
