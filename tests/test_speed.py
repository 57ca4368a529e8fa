"""The fp32 speed defaults: each model's measured memory layout and the device's evaluation batch are used by
default, change only the order of float sums, can be overridden, and leave stored results' ids alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from mnistbench import load, make_spec, run_trial
from mnistbench.core.models import MODELS, uses_channels_last
from mnistbench.core.trial import CPU_EVAL_BATCH, DEVICE_EVAL_BATCH, eval_batch_size, evaluate

TINY = dict(model="compact", batch_size=32, threads=1, epochs=0.5, eval_every=0)
CPU = torch.device("cpu")


@pytest.fixture
def data(synthetic_name):
    return load(synthetic_name)


def conv_weights_channels_last(model: nn.Module) -> list[bool]:
    # Weights with one input channel are both layouts at once: only wider ones tell.
    return [m.weight.is_contiguous(memory_format=torch.channels_last)
            for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1]


def test_spec_ids_of_stored_results_survive_the_new_defaults():
    # Ids computed before layout and evaluation batch became device/model defaults: stored results and
    # resumes keep matching the same experiments.
    assert make_spec().id == "44136fa355b3678a"
    assert make_spec(channels_last=True).id == "c218558a28b799f6"
    assert make_spec(eval_batch_size=250).id == "48f14ae696974923"


def test_trial_trains_in_the_models_layout_unless_the_spec_says(synthetic_name, data):
    assert MODELS.get("compact").channels_last
    default = run_trial(make_spec(dataset=synthetic_name, **TINY), data)
    assert all(conv_weights_channels_last(default.model)) and conv_weights_channels_last(default.model)
    nchw = run_trial(make_spec(dataset=synthetic_name, channels_last=False, **TINY), data)
    assert not any(conv_weights_channels_last(nchw.model))
    # The same fp32 math in another order: the two layouts train to nearly the same weights.
    for a, b in zip(default.model.parameters(), nchw.model.parameters()):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def test_layout_rule_spec_first_then_model_on_cpu_only():
    assert uses_channels_last("seed-simple", CPU, None) == MODELS.get("seed-simple").channels_last
    assert uses_channels_last("seed-simple", CPU, False) is False
    assert uses_channels_last("seed-simple", torch.device("cuda"), None) is False
    assert uses_channels_last("seed-simple", torch.device("cuda"), True) is True


def test_evaluation_batch_default_is_the_devices_and_changes_only_rounding(synthetic_name, data):
    assert eval_batch_size(None, CPU) == CPU_EVAL_BATCH
    assert eval_batch_size(None, torch.device("cuda")) == DEVICE_EVAL_BATCH
    assert eval_batch_size(7, CPU) == 7
    model = run_trial(make_spec(dataset=synthetic_name, **TINY), data).model
    test = data.test
    test.images = test.images.contiguous(memory_format=torch.channels_last)
    results = [evaluate(model, test, b, torch.autocast("cpu", enabled=False)) for b in (None, 7, len(test))]
    assert len({acc for acc, _ in results}) == 1
    assert max(loss for _, loss in results) - min(loss for _, loss in results) < 1e-5


def test_cli_train_can_force_nchw(synthetic_name, tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "mnistbench", "train", "--dataset", synthetic_name,
                           "--model", "compact", "--batch-size", "32", "--epochs", "0.5", "--no-channels-last",
                           "--save-json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["spec"]["channels_last"] is False


@pytest.mark.parametrize("over", [dict(epochs=1.0), dict(epochs=0.4), dict(epochs=2.0, eval_every=0),
                                  dict(steps=7, eval_every=3)])
def test_estimate_counts_the_evaluations_the_trial_makes(synthetic_name, data, over):
    from mnistbench.core.horizon import horizon

    # A target never reached (lr near 0): the cadence runs to the end of the first epoch, as the estimate assumes.
    spec = make_spec(dataset=synthetic_name, model="compact", batch_size=32, threads=1, lr=1e-6, target=1.0, **over)
    result = run_trial(spec, data)
    assert horizon(spec, len(data.train)).cadence_evaluations() == len(result.curve)
