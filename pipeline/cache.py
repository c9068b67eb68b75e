"""Stage keys: a stage runs again only when a hash of its inputs, parameters and code has changed.

Each stage leaves a stamp, stages/<name>.json in the build folder, holding its key and its typed result.
The stamp is written last (to a temporary name, then renamed), so an interrupted stage never looks done.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline.errors import Interrupted

STAMP_DIR = "stages"


def tmp_path(path: Path, suffix: str = "") -> Path:
    """A temporary name beside `path`, private to this process: two processes writing the same output (two
    explore workers building one configuration) never rename each other's half-written file."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.tmp{suffix}")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write to a temporary name, then rename: a reader never sees a half-written file."""
    tmp = tmp_path(path)
    try:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException as exc:  # a full disk, Ctrl-C: no half-written temporary file is left behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write() names no file: name it
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


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


def run_stage(out_dir: Path, name: str, key: str, outputs: list[Path], fn: Callable[[], dict],
              log: Callable[[str], None] | None = None) -> StageRun:
    """Return the stamped result when the key matches and the outputs exist; otherwise run fn and stamp it.

    Two builds into one build folder take turns per stage (an flock on stages/<name>.lock, released by the kernel
    if a process dies): the second waits, then finds the first one's stamp and reuses it instead of running again.
    Ctrl-C while fn runs becomes Interrupted, naming the stage that left no result.
    """
    found = cached_result(out_dir, name, key, outputs)
    if found is not None:
        return StageRun(found, 0.0, True)
    stamp = stamp_path(out_dir, name)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    lock_path = stamp.with_suffix(".lock")
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            (log or print)(f"  waiting for another build of this stage ({name} in {out_dir}) ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
            found = cached_result(out_dir, name, key, outputs)
            if found is not None:
                return StageRun(found, 0.0, True)
        stamp.unlink(missing_ok=True)  # from here on the stage is not done until fn succeeds
        start = time.perf_counter()
        try:
            result = fn()
        except BaseException as exc:
            # A failed or refused stage leaves no lock file behind (a refused input leaves no folders). A build
            # already waiting on it then runs the stage itself, as it would have after this failure anyway.
            lock_path.unlink(missing_ok=True)
            if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Interrupted):
                raise Interrupted(f"stage {name} was stopped and left no result in {out_dir}; the stages finished "
                                  "before it are kept and the next run reuses them") from None
            raise
        seconds = time.perf_counter() - start
        tmp = tmp_path(stamp)
        tmp.write_text(json.dumps({"key": key, "result": result, "seconds": seconds}, indent=2, default=str))
        tmp.replace(stamp)
    return StageRun(result, seconds, False)
