"""Every measured run in an SQLite database, so a rig can say "this commit made KWS 12 % slower on the L4R5".

One row per `invoke measure` (one transaction: a crash loses nothing committed), with the board, the model and
its hash, a hash of the firmware project, the project's git commit where there is one, where the figures came
from (device, QEMU instruction count, host, emulated, test-backend) and the figures. The schema is versioned
(PRAGMA user_version). `--baseline=history[:N]` gates against the median of the last N runs of the same board,
model, model hash and source: two models that share a name are never compared.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import statistics
import subprocess
import time
from pathlib import Path

from pipeline.errors import PipelineError

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    board TEXT NOT NULL,
    model TEXT NOT NULL,
    model_hash TEXT,
    firmware_hash TEXT,
    git_commit TEXT,
    source TEXT NOT NULL,
    latency_median_us REAL NOT NULL,
    latency_p90_us REAL,
    energy_uj REAL,
    energy_source TEXT,
    accuracy REAL,
    bit_exact INTEGER,
    inputs_checked INTEGER,
    result_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_target ON runs (board, model, source, time);
"""
DEFAULT_LAST = 5


def connect(path: Path) -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=30)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise PipelineError(f"run history {path} has schema version {version}; this tool writes "
                                f"{SCHEMA_VERSION}: use another --db")
        with db:
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        raise PipelineError(f"run history {path} is not an SQLite database: {exc}") from None
    return db


def firmware_hash(project_dir: Path | None) -> str | None:
    """A short hash of the firmware project's sources (not its build outputs), or None without a project."""
    if project_dir is None or not Path(project_dir).is_dir():
        return None
    project_dir = Path(project_dir)
    h = hashlib.sha256()
    for path in sorted(project_dir.rglob("*")):
        # Only the project's own build outputs are skipped: the parts of the path inside the project, not the
        # folders above it (the default build/<board>/<name>/firmware has a `build` part of its own).
        inside = path.relative_to(project_dir)
        if not path.is_file() or {"build", "managed_components"} & set(inside.parts):
            continue
        h.update(str(inside).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def git_commit(folder: Path = Path(".")) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def record(path: Path, result: dict, firmware_dir: Path | None = None) -> int:
    """Store one measured run; returns its id."""
    lat = result["latency_us"]
    db = connect(path)
    try:
        with db:  # one transaction
            cursor = db.execute(
                "INSERT INTO runs (time, board, model, model_hash, firmware_hash, git_commit, source, "
                "latency_median_us, latency_p90_us, energy_uj, energy_source, accuracy, bit_exact, inputs_checked, "
                "result_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), result["board"], result["model"], result["device"].get("model_hash"),
                 firmware_hash(firmware_dir), git_commit(), result["source"], lat["median"], lat["p90"],
                 result["energy_uj"], result["energy_source"], result["accuracy"], result["bit_exact"],
                 result["inputs_checked"], json.dumps({k: v for k, v in result.items() if k != "runs"})))
            return int(cursor.lastrowid)
    finally:
        db.close()


def recent(path: Path, board: str | None = None, model: str | None = None, source: str | None = None,
           last: int = 20, before_id: int | None = None, model_hash: str | None = None) -> list[dict]:
    """The most recent runs (newest first), filtered."""
    db = connect(path)
    db.row_factory = sqlite3.Row
    try:
        where, args = [], []
        for column, value in (("board", board), ("model", model), ("source", source), ("model_hash", model_hash)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        sql = ("SELECT id, time, board, model, model_hash, firmware_hash, git_commit, source, latency_median_us, "
               "latency_p90_us, energy_uj, energy_source, accuracy, bit_exact, inputs_checked FROM runs"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?")
        return [dict(row) for row in db.execute(sql, (*args, last))]
    finally:
        db.close()


def parse_baseline(spec: str) -> int | None:
    """`history` or `history:N` -> N (default DEFAULT_LAST); anything else -> None (a results.json path)."""
    spec = str(spec)
    if spec != "history" and not spec.startswith("history:"):
        return None
    _, _, count = spec.partition(":")
    try:
        n = int(count) if count else DEFAULT_LAST
    except ValueError:
        n = 0
    if n < 1:
        raise PipelineError(f"--baseline={spec}: give history or history:N with N at least 1")
    return n


def baseline_note(path: Path, result: dict, last: int, run_id: int) -> str | None:
    """One line when earlier runs of this board, model name and source were of another model (another hash): the
    gate compares only runs of this model's hash, and says so."""
    model_hash = result["device"].get("model_hash")
    earlier = recent(path, result["board"], result["model"], result["source"], last, before_id=run_id)
    others = sorted({r["model_hash"] or "unknown" for r in earlier if r["model_hash"] != model_hash})
    if not others:
        return None
    same = len(recent(path, result["board"], result["model"], result["source"], last, before_id=run_id,
                      model_hash=model_hash))
    what = (f"compared with the last {same} runs of model hash {model_hash} only" if same else
            f"no earlier run of model hash {model_hash}: nothing to compare, the gate passes")
    return (f"baseline history:{last}: earlier runs of {result['model']} on {result['board']} ({result['source']}) "
            f"are of another model (hash {', '.join(others)}); {what}")


def regressions(path: Path, result: dict, last: int, max_regression_pct: float, run_id: int) -> list[str]:
    """Figures worse than the median of the last runs of the same board, model, model hash and source, by more
    than allowed."""
    earlier = recent(path, result["board"], result["model"], result["source"], last, before_id=run_id,
                     model_hash=result["device"].get("model_hash"))
    if not earlier:
        return []
    found = []
    pairs = [("latency median", result["latency_us"]["median"], [r["latency_median_us"] for r in earlier])]
    if result.get("energy_uj") is not None:
        pairs.append(("energy per inference", result["energy_uj"],
                      [r["energy_uj"] for r in earlier if r["energy_uj"] is not None]))
    for name, now, values in pairs:
        if not values:
            continue
        before = statistics.median(values)
        change = (now - before) / before * 100.0 if before else 0.0
        if change > max_regression_pct:
            found.append(f"{name} {now:.1f} vs median {before:.1f} of the last {len(values)} runs "
                         f"(+{change:.1f}%, allowed {max_regression_pct}%)")
    return found


def series(rows: list[dict]) -> dict[tuple, list[dict]]:
    """The runs by board, model name, model hash and source, oldest first: two models that share a name are two
    lines, never one."""
    found: dict[tuple, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        found.setdefault((r["board"], r["model"], r["model_hash"], r["source"]), []).append(r)
    return found


def plot(rows: list[dict], out: Path) -> Path:
    """Latency (and energy where there is one) over time, one line per board, model (name and hash) and source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from datetime import datetime

    with_energy = any(r["energy_uj"] is not None for r in rows)
    fig, axes = plt.subplots(2 if with_energy else 1, 1, figsize=(10, 7 if with_energy else 4), squeeze=False)
    for (board, model, model_hash, source), items in series(rows).items():
        when = [datetime.fromtimestamp(r["time"]) for r in items]
        name = f"{model} {(model_hash or 'hash unknown')[:8]}"
        axes[0][0].plot(when, [r["latency_median_us"] for r in items], "-o", label=f"{name} on {board} ({source})")
        if with_energy:
            axes[1][0].plot(when, [r["energy_uj"] for r in items], "-o", label=f"{name} on {board}")
    axes[0][0].set_ylabel("latency median (us)")
    axes[0][0].legend(fontsize=8)
    if with_energy:
        axes[1][0].set_ylabel("energy per inference (uJ)")
    fig.autofmt_xdate()
    fig.tight_layout()
    from pipeline.cache import tmp_path

    tmp = tmp_path(out, ".png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(out)
    return out
