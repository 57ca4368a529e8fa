"""ResultStore: one SQLite file per results folder. A trial is written whole in one transaction or not at
all, so a kill at any moment (SIGKILL included) loses at most the trials in flight and never corrupts it.
Claims let several processes share a folder without running a trial twice."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import StoreError
from ..core.result import TrialResult

DB_NAME = "results.sqlite"
FINISHED = ("reached", "budget", "diverged")  # "failed" trials are retried on the next run

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY, definition TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    experiment TEXT NOT NULL, spec_id TEXT NOT NULL, label TEXT NOT NULL, config_key TEXT NOT NULL,
    seed INTEGER NOT NULL, status TEXT NOT NULL, final_accuracy REAL, time_to_target_s REAL,
    spec TEXT NOT NULL, result TEXT NOT NULL, environment TEXT NOT NULL, finished REAL NOT NULL,
    PRIMARY KEY (experiment, spec_id));
CREATE TABLE IF NOT EXISTS curves (
    experiment TEXT NOT NULL, spec_id TEXT NOT NULL, step INTEGER NOT NULL, epoch REAL NOT NULL,
    train_seconds REAL NOT NULL, wall_seconds REAL NOT NULL, train_loss REAL, eval_accuracy REAL,
    eval_loss REAL, lr REAL, PRIMARY KEY (experiment, spec_id, step));
CREATE TABLE IF NOT EXISTS inference (
    experiment TEXT NOT NULL, label TEXT NOT NULL, spec_id TEXT NOT NULL, result TEXT NOT NULL,
    finished REAL NOT NULL, PRIMARY KEY (experiment, label, spec_id));
CREATE TABLE IF NOT EXISTS models (
    experiment TEXT NOT NULL, spec_id TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (experiment, spec_id));
CREATE TABLE IF NOT EXISTS claims (
    experiment TEXT NOT NULL, spec_id TEXT NOT NULL, owner TEXT NOT NULL, claimed REAL NOT NULL,
    PRIMARY KEY (experiment, spec_id));
"""


@dataclass
class StoredTrial:
    experiment: str
    label: str
    result: TrialResult


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
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
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
                self.conn.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.1)

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
        with self._transaction() as conn:
            for sql, params in statements:
                if isinstance(params, list):
                    conn.executemany(sql, params)
                else:
                    conn.execute(sql, params)

    def save_experiment(self, name: str, definition: dict) -> None:
        self._write([("INSERT OR REPLACE INTO experiments VALUES (?, ?, ?)",
                      (name, json.dumps(definition, default=str), time.time()))])

    def add_trial(self, experiment: str, label: str, result: TrialResult, inference=None,
                  model: tuple[str, str] | None = None) -> None:
        """The trial, its curve, its inference measurement and its kept model (path relative to the folder,
        sha256; the file is already written whole) in one transaction: a model file no row names is never
        trusted, and a trial stored again without a model forgets the old one."""
        spec = result.spec
        payload = result.to_dict()
        curve = payload.pop("curve")  # kept as rows of its own, queryable
        statements = [
            ("DELETE FROM curves WHERE experiment = ? AND spec_id = ?", (experiment, spec.id)),
            ("INSERT OR REPLACE INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
             (experiment, spec.id, label, spec.config_key(), spec.seed, result.status, result.final_accuracy,
              result.time_to_target_s, json.dumps(payload["spec"]), json.dumps(payload),
              json.dumps(result.environment), time.time())),
            ("DELETE FROM claims WHERE experiment = ? AND spec_id = ?", (experiment, spec.id)),
            ("DELETE FROM models WHERE experiment = ? AND spec_id = ?", (experiment, spec.id)),
        ]
        if model is not None:
            statements.append(("INSERT INTO models VALUES (?, ?, ?, ?)", (experiment, spec.id, *model)))
        if curve:
            statements.append(("INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               [(experiment, spec.id, p["step"], p["epoch"], p["train_seconds"], p["wall_seconds"],
                                 p["train_loss"], p["eval_accuracy"], p["eval_loss"], p["lr"]) for p in curve]))
        if inference is not None:
            statements.append(("INSERT OR REPLACE INTO inference VALUES (?, ?, ?, ?, ?)",
                               (experiment, label, spec.id, json.dumps(inference.to_dict()), time.time())))
        self._write(statements)

    def relabel(self, experiment: str, spec_id: str, label: str) -> None:
        self._write([("UPDATE trials SET label = ? WHERE experiment = ? AND spec_id = ?", (label, experiment, spec_id))])

    def finished_ids(self, experiment: str) -> set[str]:
        rows = self._read("SELECT spec_id FROM trials WHERE experiment = ? AND status IN (?, ?, ?)",
                          (experiment, *FINISHED))
        return {r[0] for r in rows}

    def claim(self, experiment: str, spec_id: str, force: bool = False, stale_after_s: float = 6 * 3600) -> bool:
        """Take a trial for this process unless it is finished (ignored with `force`) or a live process holds it."""
        owner = _owner()
        with self._transaction() as conn:
            done = conn.execute("SELECT 1 FROM trials WHERE experiment = ? AND spec_id = ? AND status IN (?, ?, ?)",
                                (experiment, spec_id, *FINISHED)).fetchone()
            held = conn.execute("SELECT owner, claimed FROM claims WHERE experiment = ? AND spec_id = ?",
                                (experiment, spec_id)).fetchone()
            free = (force or not done) and (held is None or held[0] == owner or not _alive(held[0], held[1], stale_after_s))
            if free:
                conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)",
                             (experiment, spec_id, owner, time.time()))
        return free

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

    def definition(self, experiment: str) -> dict | None:
        rows = self._read("SELECT definition FROM experiments WHERE name = ?", (experiment,))
        return json.loads(rows[0][0]) if rows else None

    def experiments(self) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT experiment FROM trials ORDER BY experiment")]

    def trials(self, experiment: str) -> Iterator[StoredTrial]:
        """Stored trials of an experiment with their curves, in the order they finished."""
        rows = self._read("SELECT spec_id, label, result FROM trials WHERE experiment = ? ORDER BY finished",
                          (experiment,))
        for spec_id, label, blob in rows:
            payload = json.loads(blob)
            payload["curve"] = [dict(zip(("step", "epoch", "train_seconds", "wall_seconds", "train_loss",
                                          "eval_accuracy", "eval_loss", "lr"), r)) for r in self._read(
                "SELECT step, epoch, train_seconds, wall_seconds, train_loss, eval_accuracy, eval_loss, lr "
                "FROM curves WHERE experiment = ? AND spec_id = ? ORDER BY step", (experiment, spec_id))]
            yield StoredTrial(experiment, label, TrialResult.from_dict(payload))

    def inference(self, experiment: str) -> list[tuple[str, dict]]:
        return [(label, json.loads(blob)) for label, blob in
                self._read("SELECT label, result FROM inference WHERE experiment = ? ORDER BY finished", (experiment,))]

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
