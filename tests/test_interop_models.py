"""Kept models, predict and model export: run --keep-models, EXPERIMENT:LABEL[:SEED], PNG/JPEG/IDX, ONNX, .pt2."""

from __future__ import annotations

import shutil
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistbench import api
from mnistbench.core.models import build_model
from mnistbench.core.trial import evaluate
from mnistbench.data import load, read_images, write_idx
from mnistbench.errors import BadInput
from mnistbench.interop.lookup import resolve_model
from mnistbench.interop.predict import mnist_like
from mnistbench.run.experiments import load_experiment

from .conftest import write_dataset
from .test_experiments import assert_one_line_error, write_experiment


@pytest.fixture
def cli(capsys, monkeypatch):
    """The CLI's own entry point (main), in this process: torch is imported once for all the commands."""
    from types import SimpleNamespace

    from mnistbench.cli.app import main

    def invoke(*args):
        monkeypatch.setattr("sys.argv", ["mnistbench", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return invoke


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """A tiny experiment (2 configurations x 1 seed, 30 steps) run once with --keep-models."""
    root = tmp_path_factory.mktemp("kept")
    data = write_dataset(root / "data")
    path = write_experiment(root, f"idx:{data}", seeds=1, configs=2, steps=30)
    results = root / "results"
    api.run(str(path), results_dir=results, keep_models=True)
    return root, results, f"idx:{data}", path


def model_rows(results: Path) -> list[tuple]:
    conn = sqlite3.connect(results / "results.sqlite")
    try:
        return conn.execute("SELECT t.label, m.path FROM trials t JOIN models m USING (experiment, spec_id) "
                            "ORDER BY t.label").fetchall()
    finally:
        conn.close()


def test_keep_models_stores_the_trained_weights_with_the_spec(kept):
    root, results, dataset, _ = kept
    rows = model_rows(results)
    assert [label for label, _ in rows] == ["adam", "sgd"]
    data = load(dataset)
    for trial in api.load_results("tiny", results).trials:
        label = "sgd" if trial.spec.optimizer == "sgd" else "adam"
        saved = resolve_model(f"tiny:{label}:0", results)
        assert saved.spec == trial.spec  # the spec travels with the weights
        assert (saved.mean, saved.std) == (data.mean, data.std)
        accuracy, loss = evaluate(saved.build(), data.test, 100, torch.autocast("cpu", enabled=False))
        # The trial evaluated channels-last in batches of 250: the same sums in another order.
        assert accuracy == trial.final_accuracy and loss == pytest.approx(trial.final_loss, rel=1e-4, abs=1e-6)


def test_without_keep_models_no_model_is_written(tmp_path, synthetic_name):
    path = write_experiment(tmp_path, synthetic_name, seeds=1, configs=1, steps=10)
    api.run(str(path), results_dir=tmp_path / "r")
    assert not (tmp_path / "r" / "models").exists()
    with pytest.raises(BadInput, match="--keep-models"):
        resolve_model("tiny:sgd", tmp_path / "r")


def test_kept_model_written_before_a_crash_is_never_trusted(tmp_path, synthetic_name, monkeypatch):
    """The model file is written whole, then the store row that names it commits: a crash in between leaves
    a file that nothing names; the next run trains the trial again and removes the leftover."""
    from mnistbench.run.store import ResultStore

    path = write_experiment(tmp_path, synthetic_name, seeds=1, configs=1, steps=10)
    results = tmp_path / "r"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill between the file's rename and the store's commit

    with monkeypatch.context() as m:
        m.setattr(ResultStore, "add_trial", crash)
        with pytest.raises(KeyboardInterrupt):
            api.run(str(path), results_dir=results, keep_models=True)
    leftovers = list((results / "models" / "tiny").glob("*.pt"))
    assert len(leftovers) == 1 and not list((results / "models" / "tiny").glob("*.tmp"))
    with pytest.raises(BadInput, match="no kept model"):
        resolve_model("tiny:sgd", results)
    api.run(str(path), results_dir=results, keep_models=True)
    [(label, kept_path)] = model_rows(results)
    assert (results / kept_path).exists() and not leftovers[0].exists()
    assert resolve_model("tiny:sgd", results).spec.optimizer == "sgd"


def test_a_damaged_kept_model_is_refused(tmp_path, synthetic_name):
    path = write_experiment(tmp_path, synthetic_name, seeds=1, configs=1, steps=10)
    api.run(str(path), results_dir=tmp_path / "r", keep_models=True)
    [(_, kept_path)] = model_rows(tmp_path / "r")
    file = tmp_path / "r" / kept_path
    file.write_bytes(file.read_bytes()[:-100])
    with pytest.raises(BadInput, match="does not match the store"):
        resolve_model("tiny:sgd", tmp_path / "r")


def test_keep_models_from_a_process_pool(tmp_path, synthetic_name):
    """Pool workers ship the model file's bytes back; the driver writes it with the trial."""
    path = write_experiment(tmp_path, synthetic_name, seeds=1, configs=2, steps=10)
    api.run(str(path), results_dir=tmp_path / "r", workers=2, keep_models=True)
    assert [label for label, _ in model_rows(tmp_path / "r")] == ["adam", "sgd"]


def digit(height: int, width: int) -> np.ndarray:
    """A white-on-black '7'-like stroke pattern, off centre, on a canvas of any size."""
    img = np.zeros((height, width), dtype=np.float32)
    h, w = height // 2, width // 3
    img[height // 8: height // 8 + max(2, h // 8), width // 10: width // 10 + w] = 1.0  # the bar
    for i in range(h):  # the slanted stroke
        c = width // 10 + w - 1 - i * w // (2 * h)
        img[height // 8 + i, max(0, c - 2): c + 2] = 1.0
    return img


def test_pictures_are_prepared_as_mnist_digits():
    light_on_dark = mnist_like(digit(60, 90))
    dark_on_light = mnist_like(0.9 - 0.8 * digit(60, 90))  # grey paper, dark ink
    assert light_on_dark.shape == (28, 28) and 0 <= light_on_dark.min() and light_on_dark.max() <= 1
    assert np.abs(light_on_dark - dark_on_light).max() < 0.05  # polarity does not matter
    rows, cols = np.nonzero(light_on_dark > 0.25)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)  # fits the 20x20 box
    total = light_on_dark.sum()
    cy = (light_on_dark.sum(1) * np.arange(28)).sum() / total
    cx = (light_on_dark.sum(0) * np.arange(28)).sum() / total
    assert abs(cy - 13.5) <= 0.75 and abs(cx - 13.5) <= 0.75  # centred by centre of mass
    assert light_on_dark[:2].max() == 0 and light_on_dark[:, :2].max() == 0  # a black margin, as in MNIST
    with pytest.raises(ValueError, match="blank"):
        mnist_like(np.full((30, 30), 0.7, dtype=np.float32))


def test_predict_idx_matches_the_model_on_the_dataset(kept, tmp_path):
    root, results, dataset, _ = kept
    folder = Path(dataset[4:])
    write_idx(tmp_path / "some.idx", read_images(folder / "t10k-images-idx3-ubyte")[:20])
    predictions = api.predict("tiny:sgd", [tmp_path / "some.idx"], top=3, results_dir=results)
    data = load(dataset)
    model = resolve_model("tiny:sgd", results).build()
    with torch.no_grad():
        expected = torch.softmax(model(data.test.images[:20]), 1)
    assert [p.source for p in predictions] == [f"{tmp_path / 'some.idx'}#{i}" for i in range(20)]
    for p, probs in zip(predictions, expected):
        assert len(p.top) == 3 and p.top[0][0] == int(probs.argmax())
        assert p.top[0][1] == pytest.approx(float(probs.max()), abs=1e-5)
        assert p.top[0][1] >= p.top[1][1] >= p.top[2][1]


def test_predict_cli_pictures_any_size_colour_polarity(kept, tmp_path, cli):
    from PIL import Image

    root, results, _, _ = kept
    drawing = Image.fromarray((digit(60, 90) * 255).astype(np.uint8))
    drawing.save(tmp_path / "white-on-black.png")
    big = np.asarray(drawing.resize((270, 180), Image.BILINEAR), dtype=np.float32) / 255
    tinted = np.stack([250 - 200 * big, 245 - 200 * big, 255 - 150 * big], axis=-1)  # dark blue ink on paper
    Image.fromarray(tinted.astype(np.uint8)).save(tmp_path / "dark-on-light.jpg", quality=95)
    proc = cli("predict", "tiny:adam", tmp_path / "white-on-black.png", tmp_path / "dark-on-light.jpg",
               "--top", "3", "--format", "json", "--results", results)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [Path(o["image"]).name for o in out] == ["white-on-black.png", "dark-on-light.jpg"]
    assert all(len(o["top"]) == 3 for o in out)
    assert out[0]["top"][0]["class"] == out[1]["top"][0]["class"]  # the same digit, however drawn
    table = cli("predict", "tiny:adam", tmp_path / "white-on-black.png", "--results", results)
    assert table.returncode == 0 and "white-on-black.png" in table.stdout


def test_predict_errors_are_one_line(kept, tmp_path, cli):
    root, results, _, _ = kept
    (tmp_path / "broken.png").write_text("not an image")
    assert_one_line_error(cli("predict", "tiny:sgd", tmp_path / "broken.png", "--results", results),
                          "cannot read image", "broken.png")
    write_idx(tmp_path / "big.idx", np.zeros((2, 32, 32), dtype=np.uint8))
    assert_one_line_error(cli("predict", "tiny:sgd", tmp_path / "big.idx", "--results", results),
                          "32x32", "28x28")
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray((digit(28, 28) * 255).astype(np.uint8)).save(tmp_path / "ok.png")
    assert_one_line_error(cli("predict", "tiny:sgd", tmp_path / "ok.png", "--dataset", "fashion-mnist",
                              "--results", results), "trained on", "fashion-mnist")
    assert_one_line_error(cli("predict", "tiny:nope", tmp_path / "ok.png", "--results", results),
                          "no kept model", "adam, sgd")


def test_predict_a_bare_checkpoint_needs_its_model_name(tmp_path, cli):
    from PIL import Image
    from mnistbench.core.models import build_model

    torch.save(build_model("compact").state_dict(), tmp_path / "weights.pt")  # as older train --save-checkpoint
    Image.fromarray((digit(40, 40) * 255).astype(np.uint8)).save(tmp_path / "d.png")
    assert_one_line_error(cli("predict", tmp_path / "weights.pt", tmp_path / "d.png"), "bare state_dict", "--model")
    assert_one_line_error(cli("predict", tmp_path / "weights.pt", tmp_path / "d.png", "--model", "seed-simple"),
                          "does not hold weights of model 'seed-simple'")
    proc = cli("predict", tmp_path / "weights.pt", tmp_path / "d.png", "--model", "compact", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert 0 <= json.loads(proc.stdout)[0]["top"][0]["class"] < 10


def test_onnx_export_matches_pytorch_at_other_batch_sizes(kept, tmp_path):
    """onnxruntime's logits equal PyTorch's within 1e-4 (absolute) on a batch of 16 and of 1 (export used 2)."""
    ort = pytest.importorskip("onnxruntime")
    root, results, dataset, _ = kept
    out = api.export_model("tiny:sgd", "onnx", tmp_path / "m.onnx", results)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = resolve_model("tiny:sgd", results).build()
    images = load(dataset).test.images
    for batch in (16, 1):
        x = images[:batch]
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"images": x.numpy()})[0]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert session.get_modelmeta().custom_metadata_map["mnistbench.model"] == "compact"


def test_onnx_export_of_the_speedrun_model_votes_as_pytorch_does(tmp_path):
    """The speedrun record's model (its dense layer reading channels-last maps, votes on the images it is unsure
    of) exported to ONNX gives PyTorch's logits, voted ones included, at a batch other than the export's."""
    ort = pytest.importorskip("onnxruntime")
    from mnistbench.core.checkpoint import SavedModel
    from mnistbench.core.spec import make_spec
    from mnistbench.interop.export import export_onnx

    torch.manual_seed(0)
    model = build_model("speedrun-nhwc").eval()
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        top2 = model.net(x).topk(2, dim=1).values
    model.margin = (top2[:, 0] - top2[:, 1]).median().item()  # untrained: half the images voted on
    saved = SavedModel(make_spec(model="speedrun-nhwc"), 0.1307, 0.3081, model.state_dict(), "test")
    export_onnx(saved, model, tmp_path / "m.onnx")
    with torch.no_grad():
        expected = model(x).numpy()
    assert 4 <= model.revoted <= 12
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"images": x.numpy()})[0], expected, atol=1e-4, rtol=0)


def test_pt2_export_loads_and_matches(kept, tmp_path, cli):
    root, results, dataset, _ = kept
    proc = cli("export", "tiny:adam", "--format", "pt2", "--out", tmp_path / "m.pt2", "--results", results)
    assert proc.returncode == 0, proc.stderr
    program = torch.export.load(str(tmp_path / "m.pt2"))
    x = load(dataset).test.images[:5]
    with torch.no_grad():
        np.testing.assert_allclose(program.module()(x).numpy(), resolve_model("tiny:adam", results).build()(x).numpy(),
                                   atol=1e-5, rtol=0)


def test_onnx_export_without_the_extra_names_it(kept, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    with pytest.raises(BadInput) as err:
        api.export_model("tiny:sgd", "onnx", tmp_path / "m.onnx", kept[1])
    assert "mnistbench[export]" in err.value.one_line() and "\n" not in err.value.one_line()


def test_export_where_a_file_is_in_the_way_is_one_line_and_writes_nothing(kept, tmp_path, cli):
    root, results, _, _ = kept
    (tmp_path / "a-file").write_text("in the way")
    for fmt, out in (("onnx", tmp_path / "a-file" / "m.onnx"), ("pt2", tmp_path / "a-file" / "sub" / "m.pt2")):
        assert_one_line_error(cli("export", "tiny:sgd", "--format", fmt, "--out", out, "--results", results),
                              "cannot write", "a-file")
    assert (tmp_path / "a-file").read_text() == "in the way"


def test_predict_takes_a_folder_of_images_and_refuses_an_empty_one(kept, tmp_path, cli):
    root, results, _, _ = kept
    folder = tmp_path / "digits"
    folder.mkdir()
    shutil.copy(root / "data" / "t10k-images-idx3-ubyte", folder / "a.idx")
    (folder / ".hidden").write_text("skipped")
    proc = cli("predict", "tiny:sgd", folder, "--results", results)
    assert proc.returncode == 0 and "a.idx#199" in proc.stdout, proc.stderr
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("predict", "tiny:sgd", tmp_path / "empty", "--results", results), "holds no files")
