"""The CLI end to end through subprocesses: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mnistbench", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def assert_one_line_error(proc, fragment):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_fetch_and_info_on_a_folder(synthetic_name):
    proc = cli("data", "fetch", synthetic_name)
    assert proc.returncode == 0 and "ready" in proc.stdout
    info = cli("data", "info", synthetic_name)
    assert info.returncode == 0 and "600" in info.stdout and "200" in info.stdout


def test_missing_dataset_is_one_line(tmp_path):
    assert_one_line_error(cli("data", "fetch", f"idx:{tmp_path}"), "lacks train-images-idx3-ubyte")


def test_corrupt_file_is_one_line(synthetic):
    (synthetic / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x02\x58" + b"\x0b" * 600)
    assert_one_line_error(cli("data", "fetch", f"idx:{synthetic}"), "label 11 at index 0")


def test_debug_shows_the_traceback(tmp_path):
    proc = cli("--debug", "data", "fetch", f"idx:{tmp_path}")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--optimizer", "nope"], "unknown optimizer 'nope'"),
    (["--lr", "-1"], "lr"),
    (["--batch-size", "0"], "batch_size"),
    (["--target", "1.2"], "target"),
    (["--optimizer", "adam", "--momentum", "0.9"], "does not take 'momentum'"),
    (["--opt", "oops"], "--opt expects KEY=VALUE"),
])
def test_bad_train_flags(synthetic_name, args, fragment):
    assert_one_line_error(cli("train", "--dataset", synthetic_name, *args), fragment)


def test_train_writes_json_and_checkpoint(synthetic_name, tmp_path):
    out, ckpt = tmp_path / "r.json", tmp_path / "m.pt"
    proc = cli("train", "--dataset", synthetic_name, "--model", "compact", "--optimizer", "adam", "--lr", "0.003",
               "--batch-size", "32", "--epochs", "1", "--target", "0.5", "--save-json", str(out),
               "--save-checkpoint", str(ckpt))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["status"] in ("reached", "budget") and result["spec"]["model"] == "compact"
    assert result["curve"] and result["environment"]["torch"] and ckpt.stat().st_size > 0
    assert "time to 50% (test)" in proc.stdout
    # The checkpoint describes itself: predict and export need no --model.
    from PIL import Image

    from mnistbench.core.checkpoint import load_file

    saved = load_file(ckpt)
    assert saved.spec.model == "compact" and saved.spec.dataset == synthetic_name and saved.std > 0
    picture = Image.new("L", (28, 28), 255)
    picture.paste(0, (12, 4, 16, 24))  # a "1": dark ink on white paper
    picture.save(tmp_path / "d.png")
    assert cli("predict", ckpt, tmp_path / "d.png").returncode == 0
    assert cli("export", ckpt, "--format", "pt2", "--out", tmp_path / "m.pt2").returncode == 0


def test_train_saves_into_a_folder_removed_while_it_ran_and_never_loses_the_result(tmp_path):
    """What `train` saves after training: a folder that went away is made again; one that cannot be written
    sends the file to the temporary folder, and the one line says where (the measurement is never lost)."""
    from mnistbench.cli.train import _save
    from mnistbench.errors import BadInput

    _save(tmp_path / "gone" / "r.json", b"{}", "result")  # the folder no longer exists
    assert (tmp_path / "gone" / "r.json").read_bytes() == b"{}"
    (tmp_path / "a-file").write_text("")
    with pytest.raises(BadInput, match="it was saved to") as caught:
        _save(tmp_path / "a-file" / "r.json", b'{"kept": 1}', "result")  # a file where the folder should be
    rescued = Path(caught.value.message.rsplit("saved to ", 1)[1])
    assert rescued.read_bytes() == b'{"kept": 1}'
    rescued.unlink()


def test_info_and_list():
    assert "torch" in cli("info").stdout
    listing = cli("list", "models").stdout
    assert "seed-simple" in listing and "1,199,882" in listing
    assert_one_line_error(cli("list", "nope"), "unknown registry 'nope'")


# Usage errors, --version and bare help, where the `click` package cannot be imported (Typer carries its own
# copy; `click` is only present when Ray pulled it in, so the CLI must never need it).

NO_CLICK = "import sys; sys.modules['click'] = None; sys.argv[0] = 'mnistbench'; from mnistbench.cli import main; main()"


def cli_without_click(*args):
    return subprocess.run([sys.executable, "-c", NO_CLICK, *args], capture_output=True, text=True, timeout=300)


def run_main(args, capsys, monkeypatch) -> tuple[int, str, str]:
    """The CLI in this process, with `click` made unimportable: (exit code, stdout, stderr)."""
    from mnistbench.cli import main

    monkeypatch.setitem(sys.modules, "click", None)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_click_is_really_blocked_in_these_tests():
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.modules['click'] = None; import click"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["bogus"], "No such command 'bogus'"),
    (["train", "--batch-size", "abc"], "Invalid value for '--batch-size'"),
    (["train", "--nope"], "No such option: --nope"),
    (["report"], "Missing argument"),
    (["run", "smoke", "--seeds", "0"], "Invalid value for '--seeds'"),
])
def test_usage_errors_print_typer_usage_and_exit_2_without_click(args, fragment):
    proc = cli_without_click(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert proc.stderr.startswith("Usage: mnistbench") and fragment in proc.stderr, proc.stderr


def test_version_prints_the_version_and_exits_0_without_click():
    from mnistbench import __version__

    proc = cli_without_click("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == __version__, proc.stderr


@pytest.mark.parametrize("args", [[], ["data"]])
def test_no_arguments_prints_the_help_and_exits_0(args, capsys, monkeypatch):
    code, out, err = run_main(args, capsys, monkeypatch)
    assert code == 0 and "Usage: mnistbench" in out and "Commands:" in out and not err.strip(), err


@pytest.mark.parametrize("command", [[], ["train"], ["run"], ["results"], ["report"], ["data", "fetch"], ["list"]])
def test_help_is_readable_in_80_columns(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_main([*command, "--help"], capsys, monkeypatch)
    assert code == 0 and "Usage:" in out
    too_wide = [line for line in out.splitlines() if len(line) > 80]
    assert not too_wide, too_wide
    if command == ["train"]:  # each description starts on its option's line, with room to read
        assert "--batch-size <int>              training batch size" in out


def test_train_has_an_option_for_every_spec_field(capsys, monkeypatch):
    from mnistbench.cli.train import DICT_FLAGS
    from mnistbench.core.spec import TrialSpec

    code, out, _ = run_main(["train", "--help"], capsys, monkeypatch)
    assert code == 0
    for name in TrialSpec.model_fields:
        assert (DICT_FLAGS.get(name) or "--" + name.replace("_", "-")) + " " in out, name
    assert "[default: 128]" in out  # defaults are the spec's own (batch_size)


def test_train_passes_every_option_to_the_spec(synthetic_name, capsys, monkeypatch):
    import mnistbench.core.trial as trial

    seen = []

    def fake_run_trial(spec, data, progress=None):
        seen.append(spec)
        raise KeyboardInterrupt  # stop before training: only the spec is under test

    monkeypatch.setattr(trial, "run_trial", fake_run_trial)
    code, _, err = run_main(["train", "--dataset", synthetic_name, "--eval-batch-size", "7", "--optimizer", "sgd",
                             "--momentum", "0.5", "--opt", "weight_decay=0.001", "--channels-last", "--steps", "3",
                             "--sched", "gamma=0.5", "--schedule", "step", "--eval-on", "val", "--val-size", "50"],
                            capsys, monkeypatch)
    assert code == 130, err
    spec = seen[0]
    assert spec.eval_batch_size == 7 and spec.channels_last and spec.steps == 3 and spec.val_size == 50
    assert spec.optimizer_args == {"momentum": 0.5, "weight_decay": 0.001} and spec.schedule_args == {"gamma": 0.5}
    assert spec.epochs == 1.0 and spec.lr == 0.01  # untouched fields keep the spec's defaults
