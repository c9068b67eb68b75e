"""Stage keys: a stage runs again only when a hash of its inputs, parameters and code has changed.

Each stage leaves a stamp, stages/<name>.json in the build folder, holding its key and its typed result.
The stamp is written last (to a temporary name, then renamed), so an interrupted stage never looks done.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

STAMP_DIR = "stages"


def tmp_path(path: Path, suffix: str = "") -> Path:
    """A temporary name beside `path`, private to this process: two processes writing the same output (two
    explore workers building one configuration) never rename each other's half-written file."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.tmp{suffix}")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write to a temporary name, then rename: a reader never sees a half-written file."""
    tmp = tmp_path(path)
    if isinstance(text, bytes):
        tmp.write_bytes(text)
    else:
        tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stage_key(name: str, params: dict, inputs: list[Path] = (), code: list[Path] = ()) -> str:
    h = hashlib.sha256(name.encode())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    for path in list(inputs) + list(code):
        h.update(str(Path(path).name).encode())
        h.update(file_digest(path).encode())
    return h.hexdigest()


@dataclass
class StageRun:
    result: dict
    seconds: float
    cached: bool


def stamp_path(out_dir: Path, name: str) -> Path:
    return out_dir / STAMP_DIR / f"{name}.json"


def cached_result(out_dir: Path, name: str, key: str, outputs: list[Path]) -> dict | None:
    stamp = stamp_path(out_dir, name)
    if not stamp.is_file() or not all(Path(p).exists() for p in outputs):
        return None
    try:
        data = json.loads(stamp.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data["result"] if data.get("key") == key else None


def run_stage(out_dir: Path, name: str, key: str, outputs: list[Path], fn: Callable[[], dict]) -> StageRun:
    """Return the stamped result when the key matches and the outputs exist; otherwise run fn and stamp it."""
    found = cached_result(out_dir, name, key, outputs)
    if found is not None:
        return StageRun(found, 0.0, True)
    stamp = stamp_path(out_dir, name)
    stamp.unlink(missing_ok=True)  # from here on the stage is not done until fn succeeds
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(stamp)
    tmp.write_text(json.dumps({"key": key, "result": result, "seconds": seconds}, indent=2, default=str))
    tmp.replace(stamp)
    return StageRun(result, seconds, False)
