"""ResultStore: one SQLite file per results folder. A trial is written whole in one transaction or not at
all, so a kill at any moment (SIGKILL included) loses at most the trials in flight and never corrupts it.
Claims let several processes share a folder without running a trial twice."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import StoreError, StoreTooNew
from ..core.result import FINISHED, TrialResult

DB_NAME = "results.sqlite"
# Test-only fault injection: with this set to N, a process writing a trial kills itself (SIGKILL) right after
# the Nth statement of the trial's transaction, before COMMIT, so tests crash inside the commit itself.
KILL_IN_WRITE = "MNISTBENCH_TEST_KILL_IN_WRITE"
# "failed" trials are retried on the next run; "pruned" ones (stopped by a tuning protocol as hopeless) are not

SCHEMA_VERSION = 6  # PRAGMA user_version: 0 = the first layout (one row per trial), 2 = attempts, 3 = kept models,
# 4 = the seeds a run asked for in a column of their own (they were a key slipped into the stored definition),
# 5 = the spec defaults a run's code had, so its definition reads back as it ran after a default changes,
# 6 = a curve point's `seen` (a cadence evaluation that stopped once it could no longer meet the target)

# A trial may have several attempts (a rerun, a retry after a failure): each is a row of its own and no
# measurement is ever overwritten. The current attempt of a trial is its latest finished one (or, with
# none finished, its latest); earlier ones are marked `superseded` once a later one finishes.
SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY, definition TEXT NOT NULL, updated REAL NOT NULL, seeds INTEGER, spec_defaults TEXT);
CREATE TABLE IF NOT EXISTS trials (
    experiment TEXT NOT NULL, spec_id TEXT NOT NULL, label TEXT NOT NULL, config_key TEXT NOT NULL,
    seed INTEGER NOT NULL, status TEXT NOT NULL, final_accuracy REAL, time_to_target_s REAL,
    spec TEXT NOT NULL, result TEXT NOT NULL, environment TEXT NOT NULL, finished REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1, superseded REAL, package_version TEXT, git_revision TEXT,
    git_dirty INTEGER, PRIMARY KEY (experiment, spec_id, attempt));
CREATE TABLE IF NOT EXISTS curves (
    experiment TEXT NOT NULL, spec_id TEXT NOT NULL, step INTEGER NOT NULL, epoch REAL NOT NULL,
    train_seconds REAL NOT NULL, wall_seconds REAL NOT NULL, train_loss REAL, eval_accuracy REAL,
    eval_loss REAL, lr REAL, attempt INTEGER NOT NULL DEFAULT 1, seen INTEGER,
    PRIMARY KEY (experiment, spec_id, attempt, step));
CREATE TABLE IF NOT EXISTS inference (
    experiment TEXT NOT NULL, label TEXT NOT NULL, spec_id TEXT NOT NULL, result TEXT NOT NULL,
    finished REAL NOT NULL, attempt INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (experiment, label, spec_id, attempt));
CREATE TABLE IF NOT EXISTS models (
    experiment TEXT NOT NULL, spec_id TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (experiment, spec_id));
CREATE TABLE IF NOT EXISTS claims (
    experiment TEXT NOT NULL, spec_id TEXT NOT NULL, owner TEXT NOT NULL, claimed REAL NOT NULL,
    PRIMARY KEY (experiment, spec_id));
"""

# From the first layout: the same rows, each becoming attempt 1, with the code version split out of the
# environment's 'mnistbench_git' ("abc123+dirty"). Keys change, so tables are rebuilt (SQLite cannot alter a
# primary key); nothing is dropped before its copy is in place, all in one transaction.
MIGRATE_FROM_V0 = """
ALTER TABLE trials RENAME TO trials_v0;
ALTER TABLE curves RENAME TO curves_v0;
ALTER TABLE inference RENAME TO inference_v0;
""" + SCHEMA + """
INSERT INTO trials (experiment, spec_id, label, config_key, seed, status, final_accuracy, time_to_target_s, spec,
                    result, environment, finished, attempt, superseded, package_version, git_revision, git_dirty)
SELECT experiment, spec_id, label, config_key, seed, status, final_accuracy, time_to_target_s, spec, result,
       environment, finished, 1, NULL, json_extract(environment, '$.mnistbench_version'),
       NULLIF(replace(json_extract(environment, '$.mnistbench_git'), '+dirty', ''), ''),
       CASE WHEN json_extract(environment, '$.mnistbench_git') IS NULL THEN NULL
            ELSE json_extract(environment, '$.mnistbench_git') LIKE '%+dirty' END
FROM trials_v0;
INSERT INTO curves SELECT *, 1, NULL FROM curves_v0;
INSERT INTO inference SELECT *, 1 FROM inference_v0;
DROP TABLE trials_v0;
DROP TABLE curves_v0;
DROP TABLE inference_v0;
"""

# Stores before schema 4 kept the seeds a run asked for inside the definition's JSON ('seeds_requested').
MIGRATE_SEEDS = """
ALTER TABLE experiments ADD COLUMN seeds INTEGER;
UPDATE experiments SET seeds = json_extract(definition, '$.seeds_requested'),
                       definition = json_remove(definition, '$.seeds_requested');
"""

MIGRATE_SPEC_DEFAULTS = """
ALTER TABLE experiments ADD COLUMN spec_defaults TEXT;
"""

MIGRATE_SEEN = """
ALTER TABLE curves ADD COLUMN seen INTEGER;
"""

# The current attempt of every trial: the latest finished one, else the latest (a trial that only failed).
CURRENT = """
SELECT t.* FROM trials t WHERE t.experiment = ? AND t.attempt = (
    SELECT u.attempt FROM trials u WHERE u.experiment = t.experiment AND u.spec_id = t.spec_id
    ORDER BY u.status IN ({finished}) DESC, u.attempt DESC LIMIT 1)
""".format(finished=", ".join(f"'{status}'" for status in FINISHED))


@dataclass
class StoredTrial:
    experiment: str
    label: str
    result: TrialResult
    attempt: int = 1
    finished: float = 0.0  # when the attempt was stored (seconds since the epoch)
    superseded: bool = False  # a later attempt of the same trial finished
    current: bool = True  # the attempt results use: the latest finished one


def _start_time(pid: int) -> str:
    """The process's start time (Linux), so a claim is not kept alive by an unrelated process that was
    given the same id later; empty where /proc is not available."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _alive(owner: str, claimed: float, stale_after_s: float) -> bool:
    """A claim is live while its process runs (same host) or, elsewhere, until it is `stale_after_s` old."""
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return not started or _start_time(int(pid)) in ("", started)
    return time.time() - claimed < stale_after_s


class ResultStore:
    def __init__(self, folder: Path | str, readonly: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        try:
            if readonly:
                if not self.path.exists():
                    raise StoreError(f"no results in {self.folder}", "run an experiment first, or pass --results DIR")
                self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60)
                self._refuse_newer()
                if self._version() < SCHEMA_VERSION:
                    # An older store opened for reading (a reference store, another user's folder) is not
                    # written to: it is read through a migrated copy in memory.
                    disk, self.conn = self.conn, sqlite3.connect(":memory:", isolation_level=None)
                    disk.backup(self.conn)
                    disk.close()
                    self._migrate()
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                self._refuse_newer()  # before WAL or a migration writes anything to the file
                self._set_up()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the results store {self.path} ({exc})",
                             "check the folder is writable and has free space, or pass --results DIR") from None
        except OSError as exc:
            raise StoreError(f"cannot create the results folder {self.folder} ({exc.strerror})",
                             "pass --results DIR with a writable folder") from None

    def _set_up(self, attempts: int = 50) -> None:
        """WAL mode and the schema. Switching a new file to WAL needs an exclusive lock, and SQLite answers
        'database is locked' at once, without its busy timeout, while another process sets the same file
        up: so two runs started together on one folder retry here for a few seconds."""
        for attempt in range(attempts):
            try:
                # WAL: readers never block the writer, and a crash mid-write leaves the last commit intact.
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.1)

    def _refuse_newer(self) -> None:
        """A store written by a newer mnistbench has a layout this one does not know: reading it could misread
        it, and migrating it "down" would damage it. Refuse it untouched."""
        version = self._version()
        if version > SCHEMA_VERSION:
            self.conn.close()
            raise StoreTooNew(f"the results store {self.path} was written by a newer mnistbench (store schema "
                             f"{version}; this version reads up to {SCHEMA_VERSION}); it was left untouched",
                             "upgrade mnistbench to read it, or pass --results DIR for another folder")

    def _version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        """Bring the schema up to SCHEMA_VERSION in one transaction (a new store just gets it)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            old = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'trials'").fetchone()
            version = self._version()
            if old and version < 2:
                self._run_script(MIGRATE_FROM_V0)
            elif version < SCHEMA_VERSION:
                self._run_script(SCHEMA)
            columns = {row[1] for row in self.conn.execute("PRAGMA table_info(experiments)")}
            if "seeds" not in columns:
                self._run_script(MIGRATE_SEEDS)
            if "spec_defaults" not in columns:  # unknown for runs stored before: read under today's defaults
                self._run_script(MIGRATE_SPEC_DEFAULTS)
            if "seen" not in {row[1] for row in self.conn.execute("PRAGMA table_info(curves)")}:
                self._run_script(MIGRATE_SEEN)  # every earlier point saw the whole split: NULL
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _run_script(self, script: str) -> None:
        # executescript() would commit the open transaction first; statement by statement keeps it atomic.
        for statement in script.split(";"):
            if statement.strip():
                self.conn.execute(statement)

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: everything inside lands, or nothing does."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to {self.path} ({exc})",
                             "free some disk space or make the folder writable; stored results are intact") from None

    def _write(self, statements: list[tuple[str, Any]]) -> None:
        kill_after = os.environ.get(KILL_IN_WRITE) if any("INTO trials" in sql for sql, _ in statements) else None
        with self._transaction() as conn:
            for i, (sql, params) in enumerate(statements, 1):
                if isinstance(params, list):
                    conn.executemany(sql, params)
                else:
                    conn.execute(sql, params)
                if kill_after == str(i):
                    os.kill(os.getpid(), signal.SIGKILL)

    def save_experiment(self, name: str, definition: dict, seeds: int, spec_defaults: dict | None = None) -> None:
        """The experiment's definition as its last run read it, the seeds that run asked for, and the spec
        defaults of its code."""
        self._write([("INSERT OR REPLACE INTO experiments (name, definition, updated, seeds, spec_defaults) "
                      "VALUES (?, ?, ?, ?, ?)", (name, json.dumps(definition, default=str), time.time(), seeds,
                                                 None if spec_defaults is None else json.dumps(spec_defaults)))])

    def add_trial(self, experiment: str, label: str, result: TrialResult, inference=None,
                  model: tuple[str, str] | None = None) -> int:
        """The trial as a new attempt (earlier attempts stay), with its curve, its inference measurement and
        its kept model (path relative to the folder, sha256; the file is already written whole), in one
        transaction; earlier attempts are marked superseded only if this one finished, and only then does its
        model (or the absence of one) replace the trial's kept model: a model file no row names is never trusted.
        Returns the attempt number."""
        spec = result.spec
        payload = result.to_dict()
        curve = payload.pop("curve")  # kept as rows of its own, queryable
        env = result.environment
        dirty = env.get("git_dirty")
        now = time.time()
        key = (experiment, spec.id)
        # The attempt number is taken inside the write's transaction (one writer at a time), so two attempts
        # can never share one; later statements find it as the trial's highest attempt.
        latest = "(SELECT MAX(attempt) FROM trials WHERE experiment = ? AND spec_id = ?)"
        statements = [
            ("INSERT INTO trials (experiment, spec_id, label, config_key, seed, status, final_accuracy, "
             "time_to_target_s, spec, result, environment, finished, attempt, superseded, package_version, "
             "git_revision, git_dirty) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
             f"COALESCE({latest}, 0) + 1, NULL, ?, ?, ?)",
             (*key, label, spec.config_key(), spec.seed, result.status, result.final_accuracy,
              result.time_to_target_s, json.dumps(payload["spec"]), json.dumps(payload), json.dumps(env), now, *key,
              env.get("mnistbench_version"), env.get("git_revision"), None if dirty is None else int(dirty))),
            ("DELETE FROM claims WHERE experiment = ? AND spec_id = ?", key),
        ]
        if result.status in FINISHED:
            statements.append((f"UPDATE trials SET superseded = ? WHERE experiment = ? AND spec_id = ? AND "
                               f"attempt < {latest} AND superseded IS NULL", (now, *key, *key)))
            statements.append(("DELETE FROM models WHERE experiment = ? AND spec_id = ?", key))
            if model is not None:
                statements.append(("INSERT INTO models VALUES (?, ?, ?, ?)", (*key, *model)))
        if curve:
            statements.append((f"INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {latest}, ?)",
                               [(*key, p["step"], p["epoch"], p["train_seconds"], p["wall_seconds"],
                                 p["train_loss"], p["eval_accuracy"], p["eval_loss"], p["lr"], *key, p["seen"])
                                for p in curve]))
        if inference is not None:
            statements.append((f"INSERT INTO inference VALUES (?, ?, ?, ?, ?, {latest})",
                               (experiment, label, spec.id, json.dumps(inference.to_dict()), now, *key)))
        self._write(statements)
        return self._read(f"SELECT {latest}", key)[0][0]

    def finished_ids(self, experiment: str) -> set[str]:
        rows = self._read("SELECT DISTINCT spec_id FROM trials WHERE experiment = ? AND status IN (?, ?, ?, ?)",
                          (experiment, *FINISHED))
        return {r[0] for r in rows}

    def claim(self, experiment: str, spec_id: str, force: bool = False, stale_after_s: float = 6 * 3600) -> bool:
        """Take a trial for this process unless it is finished (ignored with `force`) or a live process holds it."""
        owner = _owner()
        with self._transaction() as conn:
            done = conn.execute("SELECT 1 FROM trials WHERE experiment = ? AND spec_id = ? AND status IN (?, ?, ?, ?)",
                                (experiment, spec_id, *FINISHED)).fetchone()
            held = conn.execute("SELECT owner, claimed FROM claims WHERE experiment = ? AND spec_id = ?",
                                (experiment, spec_id)).fetchone()
            free = (force or not done) and (held is None or held[0] == owner or not _alive(held[0], held[1], stale_after_s))
            if free:
                conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)",
                             (experiment, spec_id, owner, time.time()))
        return free

    def live_claims(self, stale_after_s: float = 6 * 3600) -> int:
        """Trials being run right now on this store, by this process or any other (all experiments): what a
        trial's time shares the machine with when the processes run on one machine."""
        rows = self._read("SELECT owner, claimed FROM claims")
        return sum(_alive(owner, claimed, stale_after_s) for owner, claimed in rows)

    def release_claims(self) -> None:
        """Drop this process's claims (on a clean stop or Ctrl-C) so others may take them at once."""
        try:
            self._write([("DELETE FROM claims WHERE owner = ?", (_owner(),))])
        except StoreError:
            pass  # claims of a dead process are recovered as stale anyway

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path} ({exc})", "is it a mnistbench results folder?") from None

    def last_run(self, experiment: str) -> tuple[dict | None, int | None, dict]:
        """The definition the experiment's last run stored, the seeds it asked for and the spec defaults of
        its code ({} when not stored); (None, None, {}) when it never ran."""
        rows = self._read("SELECT definition, seeds, spec_defaults FROM experiments WHERE name = ?", (experiment,))
        if not rows:
            return None, None, {}
        definition, seeds, defaults = rows[0]
        return json.loads(definition), seeds, json.loads(defaults) if defaults else {}

    def experiments(self) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT experiment FROM trials ORDER BY experiment")]

    def trials(self, experiment: str, all_attempts: bool = False) -> Iterator[StoredTrial]:
        """The current attempt of each stored trial of an experiment (or, with `all_attempts`, every attempt),
        with their curves, in the order they finished."""
        current = {(r[0], r[1]) for r in self._read(f"SELECT spec_id, attempt FROM ({CURRENT})", (experiment,))}
        sql = "SELECT spec_id, attempt, label, result, finished, superseded FROM trials WHERE experiment = ?"
        rows = self._read(sql + " ORDER BY finished, attempt", (experiment,))
        for spec_id, attempt, label, blob, finished, superseded in rows:
            is_current = (spec_id, attempt) in current
            if not (all_attempts or is_current):
                continue
            payload = json.loads(blob)
            payload["curve"] = [dict(zip(("step", "epoch", "train_seconds", "wall_seconds", "train_loss",
                                          "eval_accuracy", "eval_loss", "lr", "seen"), r)) for r in self._read(
                "SELECT step, epoch, train_seconds, wall_seconds, train_loss, eval_accuracy, eval_loss, lr, seen "
                "FROM curves WHERE experiment = ? AND spec_id = ? AND attempt = ? ORDER BY step",
                (experiment, spec_id, attempt))]
            yield StoredTrial(experiment, label, TrialResult.from_dict(payload), attempt, finished,
                              superseded is not None, is_current)

    def code_versions(self, experiment: str) -> dict[str, tuple[str | None, str | None, bool | None]]:
        """Per spec id, the package version, git revision and dirty flag of its current attempt."""
        rows = self._read(f"SELECT spec_id, package_version, git_revision, git_dirty FROM ({CURRENT})", (experiment,))
        return {r[0]: (r[1], r[2], None if r[3] is None else bool(r[3])) for r in rows}

    def inference(self, experiment: str) -> list[tuple[str, dict]]:
        """Inference measurements of the current attempts."""
        sql = (f"SELECT i.label, i.result FROM inference i JOIN ({CURRENT}) c ON i.spec_id = c.spec_id "
               "AND i.attempt = c.attempt WHERE i.experiment = ? ORDER BY i.finished")
        return [(label, json.loads(blob)) for label, blob in self._read(sql, (experiment, experiment))]

    def kept_models(self, experiment: str, label: str) -> list[tuple[int, str, str]]:
        """(seed, path relative to the folder, sha256) of the kept models of one configuration, by seed."""
        if not self._has_models():
            return []
        return self._read("SELECT t.seed, m.path, m.sha256 FROM trials t JOIN models m USING (experiment, spec_id) "
                          "WHERE t.experiment = ? AND t.label = ? ORDER BY t.seed", (experiment, label))

    def labels_with_models(self, experiment: str) -> list[str]:
        if not self._has_models():
            return []
        return [r[0] for r in self._read("SELECT DISTINCT t.label FROM trials t JOIN models m USING "
                                         "(experiment, spec_id) WHERE t.experiment = ? ORDER BY t.label",
                                         (experiment,))]

    def _has_models(self) -> bool:
        """Stores written before models were kept (opened read-only, so not upgraded) have no such table."""
        return bool(self._read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'models'"))

    def integrity_ok(self) -> bool:
        return self._read("PRAGMA integrity_check")[0][0] == "ok"
