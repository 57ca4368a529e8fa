"""The CLI end to end through subprocesses: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

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


def test_info_and_list():
    assert "torch" in cli("info").stdout
    listing = cli("list", "models").stdout
    assert "seed-simple" in listing and "1,199,882" in listing
    assert_one_line_error(cli("list", "nope"), "unknown registry 'nope'")
