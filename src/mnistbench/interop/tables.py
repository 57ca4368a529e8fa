"""One row per trial, with its spec (and environment) flattened into columns: CSV, JSON and Parquet."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterable

from ..core.result import TrialResult
from ..extras import require

MEASURES = ("status", "final_accuracy", "final_loss", "time_to_target_s", "steps_to_target", "epochs_to_target",
            "steps", "train_seconds", "eval_seconds", "wall_seconds", "load_seconds", "compile_seconds", "device")


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts become dotted keys (spec.optimizer_args.momentum); lists become JSON text."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value
    return out


def trial_row(experiment: str, label: str, result: TrialResult) -> dict[str, Any]:
    row: dict[str, Any] = {"experiment": experiment, "label": label, "seed": result.spec.seed,
                           "spec_id": result.spec.id, "config_key": result.spec.config_key()}
    row.update({m: getattr(result, m) for m in MEASURES})
    row["evaluations"] = len(result.curve)
    flatten("spec", result.spec.model_dump(mode="json"), row)
    flatten("env", result.environment, row)
    return row


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """The union of the rows' keys, in the order first seen (trials of other configurations add keys)."""
    return list(dict.fromkeys(key for row in rows for key in row))


def _uniform(rows: list[dict[str, Any]], columns: list[str]) -> list[dict[str, Any]]:
    """Every row with every column (None where absent); a column mixing text, numbers or flags becomes text,
    as a typed table (Parquet) needs one type per column."""
    full = [{c: row.get(c) for c in columns} for row in rows]
    for c in columns:
        kinds = {bool if isinstance(r[c], bool) else float if isinstance(r[c], (int, float)) else str
                 for r in full if r[c] is not None}
        if len(kinds) > 1:
            for r in full:
                r[c] = None if r[c] is None else str(r[c])
    return full


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows))
    writer.writeheader()
    writer.writerows(_uniform(rows, _columns(rows)))
    return buffer.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(_uniform(rows, _columns(rows)), indent=1)


def write_parquet(rows: Iterable[dict[str, Any]], out: Path) -> Path:
    """A Parquet file, written to a temporary name and renamed: a reader never sees half a file."""
    pa = require("pyarrow", "parquet", "Parquet output")
    pq = require("pyarrow.parquet", "parquet", "Parquet output")
    rows = list(rows)
    columns = _columns(rows)
    table = pa.Table.from_pylist(_uniform(rows, columns))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
