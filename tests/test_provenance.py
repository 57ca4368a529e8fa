"""Where a number came from: threads resolved and set per trial in every executor, the environment and code
version stored with each trial, mixed environments marked and not tested, attempts never overwritten, and
results computed for the experiment's current definition."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import mnistbench
from mnistbench import api
from mnistbench.core import hardware
from mnistbench.core.spec import TrialSpec
from mnistbench.report.analysis import mixed_environments_allowed
from mnistbench.report.comparison import compare
from mnistbench.run.executors import RayCluster
from mnistbench.run.jobs import Job
from mnistbench.run.store import SCHEMA_VERSION, ResultStore
from tests.test_report import ENV, make_result

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"
# Stores written before schema 5, kept as they were committed: the CPU reference store of the first wave (two
# revisions, one dirty) and the H200 store (no revision), which is still the reference there.
FIRST_LAYOUT = {"seed-cpu": Path(__file__).parent / "stores" / "seed-cpu-first-layout",
                "seed-h200": REFERENCE / "seed-h200"}

EXPERIMENT = """name = "{name}"
seeds = 1

[defaults]
dataset = "{dataset}"
model = "compact"
batch_size = 32
steps = 10
eval_every = 10
eval_batch_size = 100
target = 0.5
{extra}
"""
CONFIGS = {
    "one thread": 'optimizer = "sgd", lr = 0.05, threads = 1',
    "resolved": 'optimizer = "adam", lr = 0.003',
    "added later": 'optimizer = "adamw", lr = 0.003',
}


def write(folder: Path, dataset: str, labels: list[str], name: str = "prov", extra: str = "") -> Path:
    text = EXPERIMENT.format(name=name, dataset=dataset, extra=extra)
    for label in labels:
        text += f'\n[[config]]\nlabel = "{label}"\nfields = {{ {CONFIGS[label]} }}\n'
    path = folder / f"{name}-{len(labels)}.toml"
    path.write_text(text)
    return path


def rows(results: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(results / "results.sqlite")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """'one thread' (threads = 1 in its spec) then 'resolved' (no threads), in this process, on a machine
    made to look like it has 3 usable cores: the second trial must run with 3 threads, not the 1 left over."""
    from tests.conftest import write_dataset

    root = tmp_path_factory.mktemp("prov")
    dataset = f"idx:{write_dataset(root / 'data')}"
    path = write(root, dataset, ["one thread", "resolved"])
    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNISTBENCH_CACHE", str(root / "cache"))
        mp.setenv("MNISTBENCH_OFFLINE", "1")
        mp.setattr(hardware, "usable_cores", lambda: 3)
        res = api.run(str(path), results_dir=root / "results")
    assert res.run_summary.ran == 2
    return root, dataset, path, res, before


# 2. Threads: an explicit count per trial, set in every executor, stored, never leaking.

def test_in_process_trials_run_with_their_resolved_threads_never_a_leftover(ran):
    root, _, _, res, before = ran
    threads = {s.label: [r.environment["torch_threads"] for r in s.results] for s in res.summaries}
    assert threads == {"one thread": [1], "resolved": [3]}
    assert torch.get_num_threads() == before  # the caller's own count is given back


def test_process_pool_gives_each_trial_its_share_and_a_resume_with_other_workers_is_marked_mixed(ran, tmp_path,
                                                                                                 monkeypatch):
    root, dataset, _, _, _ = ran
    path = write(tmp_path, dataset, ["resolved"], name="pool")
    # 2 cores as the driver sees them: the share must be decided by the driver, which knows how many trials
    # run side by side, and travel with the job (a spawned worker alone would see all the real cores)
    monkeypatch.setattr(hardware, "usable_cores", lambda: 2)
    alone = api.run(str(path), seeds=1, results_dir=tmp_path / "r")  # in-process: both cores
    pooled = api.run(str(path), seeds=3, results_dir=tmp_path / "r", workers=2)  # 2 workers: 1 thread each
    assert pooled.run_summary.ran == 2
    assert [r.environment["torch_threads"] for r in alone.trials] == [2]
    assert [r.environment["torch_threads"] for r in pooled.trials] == [2, 1, 1]
    # threads stay out of the spec id (the trials resume), so the configuration is marked as a mix; the two
    # workers also ran beside each other, which the solo trial did not
    assert pooled.rows[0].environment == "mixed: threads 2, 1; sharing alone, shared with other trials"


def test_ray_tasks_reserve_the_cpus_of_the_threads_their_trial_runs_with(monkeypatch):
    submitted = []

    class Ref:  # an object reference: hashable, as Ray's are
        def __init__(self, job):
            self.job = job

    class Remote:
        def options(self, **resources):
            return types.SimpleNamespace(remote=lambda job: submitted.append((resources, job)) or Ref(job))

    fake = types.SimpleNamespace(is_initialized=lambda: True, remote=lambda fn: Remote(), get=lambda ref: ref,
                                 wait=lambda pending, num_returns: (pending[:1], pending[1:]))
    monkeypatch.setitem(sys.modules, "ray", fake)
    jobs = [Job("default", TrialSpec(seed=0)), Job("own", TrialSpec(seed=0, threads=3))]
    list(RayCluster(cpus_per_trial=2).run(jobs))
    assert [(res["num_cpus"], job.threads) for res, job in submitted] == [(2, 2), (3, 3)]


def _mixed_groups():
    sgd = [make_result(s, final=0.985 + 0.001 * s, time_to_target=5.0 + 0.1 * s,
                       environment={**ENV, "torch_threads": t}) for s, t in enumerate((1, 1, 2))]
    adam = [make_result(s, final=0.983 + 0.001 * s, time_to_target=3.0 + 0.1 * s,
                        environment={**ENV, "torch_threads": 1}, optimizer="adam", lr=0.001) for s in range(3)]
    return sgd, adam


def test_time_is_not_tested_across_mixed_environments_unless_allowed():
    sgd, adam = _mixed_groups()
    refused = compare(sgd, adam, "time_to_target", "SGD", "Adam")
    assert refused.p is None and "Not tested" in refused.sentence and "threads 1, 2" in refused.sentence
    assert compare(sgd, adam, "accuracy", "SGD", "Adam").p is not None  # accuracy does not run on the clock
    other_machine = [make_result(s, time_to_target=3.0, environment={**ENV, "cpu": "Other CPU"}, optimizer="adam",
                                 lr=0.001) for s in range(3)]
    assert compare(sgd[:2], other_machine, "time_to_target").p is None  # two uniform groups, two machines
    bf16 = [make_result(s, time_to_target=3.0 + 0.1 * s, environment={**ENV, "torch_threads": 1}, precision="bf16")
            for s in range(3)]
    assert compare(sgd[:2], bf16, "time_to_target").p is not None  # precision may be what is compared
    with mixed_environments_allowed():
        assert compare(sgd, adam, "time_to_target", "SGD", "Adam").p is not None


_MMAPPED_BLOCKS = """
import ctypes, sys, torch
from mnistbench.core.hardware import keep_freed_memory
class Info(ctypes.Structure):  # glibc's struct mallinfo2: hblks (blocks served by mmap) is the fifth field
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
kept = sys.argv[1] == "kept" and keep_freed_memory()
before = libc.mallinfo2().hblks
x = torch.empty(64 * 2**20 // 4)  # 64 MB: over glibc's largest mmap threshold (32 MB)
print(kept, libc.mallinfo2().hblks - before)
"""


def _has_mallinfo2() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:  # musl, macOS, Windows
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _has_mallinfo2(), reason="glibc 2.33+ only (mallinfo2)")
def test_trials_keep_freed_memory_instead_of_mmapping_every_activation():
    """With the setting, a block larger than any mmap threshold comes from the heap (kept across steps), not
    from a fresh mmap that is page-faulted in and zero-filled at every step."""
    def mmapped(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _MMAPPED_BLOCKS, mode], capture_output=True, text=True,
                             check=True).stdout.split()
        return out[0], int(out[1])

    assert mmapped("default") == ("False", 1)  # what glibc does on its own: the case the setting exists for
    assert mmapped("kept") == ("True", 0)


def test_auto_precision_that_resolved_differently_is_a_mixed_environment():
    """One spec (precision "auto") run on a bf16 machine and on an fp32 one: its times are not one sample."""
    from mnistbench.report.analysis import environment_mix

    runs = [make_result(s, time_to_target=3.0, environment={**ENV, "precision": p}, precision="auto")
            for s, p in enumerate(["bf16", "fp32", "bf16"])]
    assert environment_mix(runs) == {"precision": ["bf16", "fp32"]}
    assert environment_mix(runs[::2]) == {}


def test_trials_with_and_without_the_allocator_setting_are_a_mixed_environment():
    """A run resumed across the allocator change pools 1.2-1.7x different step times: marked. A failed trial's
    environment (written by the parent process) and trials stored before the setting existed are not told apart."""
    from mnistbench.report.analysis import environment_mix

    kept = [make_result(s, environment={**ENV, "malloc_kept": True}) for s in range(2)]
    default = make_result(2, environment={**ENV, "malloc_kept": False})
    assert environment_mix([*kept, default]) == {"allocator": ["freed memory kept", "glibc default"]}
    failed = make_result(3, time_to_target=None, status="failed", environment={**ENV, "malloc_kept": False})
    older = make_result(4, environment=ENV)
    assert environment_mix([*kept, failed, older]) == {}


def _fabricated_store(folder: Path, results) -> Path:
    store = ResultStore(folder)
    for r in results:
        store.add_trial("fab", "SGD" if r.spec.optimizer == "sgd" else "Adam", r)
    store.close()
    return folder


def test_results_and_report_mark_a_mixed_configuration_and_list_its_revisions(tmp_path):
    sgd, adam = _mixed_groups()
    sgd[2].environment.update(git_revision="bbbbbbbbbbbb", git_dirty=True)
    folder = _fabricated_store(tmp_path / "r", sgd + adam)
    res = api.load_results("fab", folder)
    assert [(r.configuration, r.environment, r.revisions) for r in res.rows] == [
        ("SGD", "mixed: threads 1, 2", "abc123def456, bbbbbbbbbbbb+dirty"), ("Adam", "", "abc123def456")]
    md = api.write_report("fab", folder, tmp_path / "report").markdown.read_text()
    assert "**mixed environment**: threads 1, 2" in md and "bbbbbbbbbbbb+dirty" in md
    assert "Not tested: the time to 97%" in md
    allowed = api.write_report("fab", folder, tmp_path / "allowed", allow_mixed=True).markdown.read_text()
    assert "Not tested" not in allowed and "were tested anyway" in allowed


# 3. Code version: package version, git revision and dirty flag, as fields of their own.

def test_every_trial_stores_package_version_git_revision_and_dirty_flag(ran):
    root = ran[0]
    here = Path(mnistbench.__file__).parent
    head = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or None
    dirty = bool(subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True).stdout.strip()) if head else None
    stored = rows(root / "results", "SELECT package_version, git_revision, git_dirty FROM trials")
    assert stored == [(mnistbench.__version__, head, None if dirty is None else int(dirty))] * 2
    assert {tuple(r.revisions) for r in ran[3].summaries} == {(head + ("+dirty" if dirty else ""),)}


@pytest.mark.parametrize("name", ["seed-cpu", "seed-h200"])
def test_stores_of_the_first_layout_open_with_their_trials_and_revisions(name, tmp_path):
    original = FIRST_LAYOUT[name] / "results.sqlite"
    before = original.read_bytes()
    read = api.load_results("seed", original.parent)  # read-only: migrated in memory, the file untouched
    # All 24 trials read back. They ran NCHW with evaluation batches of 2,000, which today's `seed` leaves to the
    # measured defaults: such trials are a configuration of their own, so they may be set apart as no longer defined.
    assert len(read.trials) + sum(u.n for u in read.undefined) == 24 and original.read_bytes() == before
    shutil.copy(original, tmp_path / "results.sqlite")
    ResultStore(tmp_path).close()  # opened for writing: migrated in place
    assert rows(tmp_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(tmp_path, "SELECT count(*) FROM curves WHERE seen IS NOT NULL") == [(0,)]  # every old point: full
    assert rows(tmp_path, "PRAGMA integrity_check") == [("ok",)]
    assert rows(tmp_path, "SELECT count(*), count(DISTINCT attempt) FROM trials") == [(24, 1)]
    assert len(rows(tmp_path, "SELECT * FROM curves")) == len(rows(tmp_path, "SELECT * FROM curves WHERE attempt = 1"))
    migrated = api.load_results("seed", tmp_path)
    revisions = {r for s in [*migrated.summaries, *migrated.undefined] for r in s.revisions}
    assert revisions == ({"6152a2c6db84", "5750aec13ed7+dirty"} if name == "seed-cpu" else {"unknown"})


def test_the_cpu_reference_store_is_one_clean_revision_of_todays_seed_on_one_environment():
    # What the README's CPU column claims: 24 trials of today's `seed` (none set apart as no longer defined), all
    # from one clean revision; no configuration mixes environments (machine, threads, torch, precision, allocator),
    # and every configuration ran on the same machine with 2 threads, so comparisons between them hold too.
    res = api.load_results("seed", REFERENCE / "seed-cpu")
    assert sum(s.n for s in res.summaries) == 24 and not res.undefined and not res.missing
    assert {r for s in res.summaries for r in s.revisions} == {"e939f6fc3247"}
    assert not any(s.environment_mix for s in res.summaries)
    first = res.summaries[0].results[0].environment
    assert all(r.environment["torch_threads"] == 2 and r.environment["cpu"] == first["cpu"]
               for s in res.summaries for r in s.results)


# 5. Attempts: a rerun adds, never replaces; results follow the experiment's current definition.

def test_a_failed_rerun_keeps_the_finished_attempt_current_and_stored(ran, tmp_path, monkeypatch):
    root, _, path, res, _ = ran
    shutil.copytree(root / "results", tmp_path / "r")
    before = rows(tmp_path / "r", "SELECT spec_id, result FROM trials")

    def crash(*args, **kwargs):
        raise RuntimeError("the machine caught fire")

    monkeypatch.setattr("mnistbench.run.jobs.run_trial", crash)
    rerun = api.run(str(path), results_dir=tmp_path / "r", rerun=True)
    assert rerun.run_summary.failed == ["one thread", "resolved"]
    assert set(before) <= set(rows(tmp_path / "r", "SELECT spec_id, result FROM trials"))  # nothing overwritten
    assert sorted(rows(tmp_path / "r", "SELECT attempt, status, superseded FROM trials WHERE attempt = 1")) == sorted(
        (1, r.status, None) for r in res.trials)  # not superseded by an attempt that did not finish
    assert [r.status for r in rerun.trials] == [r.status for r in res.trials]
    history = api.load_results(str(path), tmp_path / "r", all_attempts=True).attempts
    assert sorted((a.attempt, a.state, a.status) for a in history) == [
        (1, "current", res.trials[0].status), (1, "current", res.trials[1].status),
        (2, "not current", "failed"), (2, "not current", "failed")]


def test_the_latest_finished_attempt_counts_and_supersedes_the_earlier_ones(tmp_path):
    store = ResultStore(tmp_path)
    first, second = make_result(0, time_to_target=5.0), make_result(0, time_to_target=4.0)
    failed = make_result(0, status="failed", time_to_target=None)
    assert [store.add_trial("fab", "SGD", r) for r in (first, failed, second)] == [1, 2, 3]
    store.close()
    assert rows(tmp_path, "SELECT attempt, superseded IS NOT NULL FROM trials ORDER BY attempt") == [
        (1, 1), (2, 1), (3, 0)]
    res = api.load_results("fab", tmp_path, all_attempts=True)
    assert [r.time_to_target_s for r in res.trials] == [4.0]
    assert [(a.attempt, a.state) for a in res.attempts] == [(1, "superseded"), (2, "superseded"), (3, "current")]


def test_results_follow_the_current_definition_and_set_dropped_configurations_apart(ran, tmp_path):
    root, dataset, _, _, _ = ran
    now = write(tmp_path, dataset, ["resolved", "added later"])  # 'one thread' dropped, 'added later' new
    res = api.load_results(str(now), root / "results")
    assert [s.label for s in res.summaries] == ["resolved"]
    assert [s.label for s in res.undefined] == ["one thread"]
    assert res.partial and res.missing == 1
    md = api.write_report(str(now), root / "results", tmp_path / "report").markdown.read_text()
    assert "Partial results" in md and "Stored but no longer defined" in md and "- one thread (1 trial)" in md


def test_a_two_phase_experiment_missing_a_rerun_seed_is_partial(ran, tmp_path):
    _, dataset, _, _, _ = ran
    select = 'val_size = 100\neval_on = "val"\n\n[select]\ngroup_by = ["model"]\nlabel = "best {group}"\n'
    path = write(tmp_path, dataset, ["one thread", "resolved"], name="two-phase", extra=select)
    done = api.run(str(path), seeds=2, results_dir=tmp_path / "r")
    assert done.run_summary.ran == 4 and not done.partial  # two candidates, the winner with held-out seeds 1, 2
    conn = sqlite3.connect(tmp_path / "r" / "results.sqlite")
    with conn:
        conn.execute("DELETE FROM trials WHERE seed = 2")  # a rerun of the winner never landed
    conn.close()
    assert api.load_results("two-phase", tmp_path / "r").partial


def test_a_direct_run_trial_gives_back_the_callers_threads(synthetic_name):
    from mnistbench import load, make_spec, run_trial

    before = torch.get_num_threads()
    asked = 1 if before != 1 else 2
    result = run_trial(make_spec(dataset=synthetic_name, model="compact", batch_size=32, steps=4, threads=asked,
                                 eval_batch_size=100), load(synthetic_name))
    assert result.environment["torch_threads"] == asked  # the trial ran with its own count
    assert torch.get_num_threads() == before  # and the notebook's count is given back


def test_the_seeds_a_run_asked_for_are_a_column_not_a_key_in_the_definition(tmp_path):
    shutil.copy(FIRST_LAYOUT["seed-cpu"] / "results.sqlite", tmp_path / "results.sqlite")
    ResultStore(tmp_path).close()  # migrated: the seeds move out of the stored definition
    [(definition, seeds)] = rows(tmp_path, "SELECT definition, seeds FROM experiments WHERE name = 'seed'")
    assert seeds == 3 and "seeds_requested" not in json.loads(definition)
    assert ResultStore(tmp_path, readonly=True).last_run("seed")[1] == 3


def test_a_stored_definition_reads_back_as_it_ran_after_a_spec_default_changes(synthetic_name, tmp_path):
    # Trials run when label_smoothing's default was 0.05: the definition left it unset, the code set it.
    path = write(tmp_path, synthetic_name, ["resolved"], name="drift", extra="label_smoothing = 0.05")
    api.run(str(path), results_dir=tmp_path / "r")
    conn = sqlite3.connect(tmp_path / "r" / "results.sqlite")
    with conn:
        conn.execute("UPDATE experiments SET definition = json_remove(definition, '$.defaults.label_smoothing'), "
                     "spec_defaults = json_set(spec_defaults, '$.label_smoothing', 0.05)")
    res = api.load_results("drift", tmp_path / "r")
    assert [s.label for s in res.summaries] == ["resolved"] and not res.undefined and not res.partial
    with conn:  # without the code's defaults, the same trials no longer match their own definition
        conn.execute("UPDATE experiments SET spec_defaults = NULL")
    conn.close()
    assert [s.label for s in api.load_results("drift", tmp_path / "r").undefined] == ["resolved"]
