"""What a build folder holds, read and written in this one place.

`build/<board>/<name>/` holds one model variant built for one board; its name is the model's unless `--name` gives
another, so variants (a width, a pruning kind, an explore pick, a brought .tflite with a zoo model's name) can sit
side by side. Its manifest, `holds.json`, says which variant: the model, whether it is a zoo model or a brought
.tflite, the options that made it and the model hash, written with the report when a build succeeds. Every command
that acts on a build folder finds and describes it here; `--board`, `--model` and `--name` values are names, never
paths. Also here: `invoke clean`'s plan (what it removes, what it keeps) and the tidying of the folders a refused
run created.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.cache import write_atomic
from pipeline.errors import PipelineError

MANIFEST = "holds.json"
# Folders of the build root that are the tool's own, not a board's: the model stage cache, the emulator's compiled
# harness, rig results.
RESERVED = ("_models", "_harness", "rig")
HISTORY_FILES = ("hil.sqlite", "hil.sqlite-journal", "hil.sqlite-wal", "hil.sqlite-shm", "history.png")
EXPLORE = "explore"  # build/<board>/<model>/explore: an explore study (pipeline.explore)


def check_name(option: str, value: str) -> str:
    """A --board/--model/--name value used as a folder name: one name, never a path."""
    value = str(value)
    if (not value or value in (".", "..") or "/" in value or "\\" in value or value.startswith(".")
            or value.startswith("_") or "\0" in value):
        raise PipelineError(f"--{option}={value!r} must be a name, not a path (no '/', no '..', not starting with "
                            "'.' or '_')")
    return value


@dataclass
class Holds:
    """What one build folder holds."""
    folder: Path
    name: str
    board: str
    model: str
    source: str  # "zoo", "file" (a user's model file or builder, --model=PATH), "tflite" (a brought model) or
    # "unknown" (a folder built before manifests: its report only)
    variant: dict = field(default_factory=dict)  # the options that made the model (zoo) or the brought file
    model_hash: str | None = None
    updated: float = 0.0

    def same_variant(self, other: "Holds") -> bool:
        if "unknown" in (self.source, other.source):
            return self.model == other.model
        return (self.model, self.source, self.variant) == (other.model, other.source, other.variant)

    def describe(self, other: "Holds | None" = None) -> str:
        """`digits (zoo model, prune=structured)`: the model and, beside another variant, what differs."""
        if self.source == "tflite":
            return f"{self.model} (brought {self.variant.get('tflite')})"
        if self.source == "unknown":
            return f"{self.model}" + (f" (model hash {self.model_hash})" if self.model_hash else "")
        shown = {k: v for k, v in self.variant.items()
                 if other is None or other.source != self.source or other.variant.get(k) != v}
        if other is not None and other.source != self.source:
            shown = {}
        options = ", ".join(f"{k}={v}" for k, v in shown.items() if v is not None)
        kind = "zoo model" if self.source == "zoo" else "model file"
        return f"{self.model} ({kind}{', ' + options if options else ''})"


def read(folder: Path) -> Holds | None:
    """What `folder` holds: its manifest, or for a folder built before manifests its report.json; None if neither."""
    folder = Path(folder)
    try:
        data = json.loads((folder / MANIFEST).read_text())
        return Holds(folder=folder, name=folder.name, board=data["board"], model=data["model"],
                     source=data["source"], variant=data.get("variant") or {}, model_hash=data.get("model_hash"),
                     updated=float(data.get("updated") or 0.0))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    report = folder / "report.json"
    try:
        data = json.loads(report.read_text())
        return Holds(folder=folder, name=folder.name, board=data["board"], model=data["model"], source="unknown",
                     model_hash=data.get("model_hash"), updated=report.stat().st_mtime)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(holds: Holds) -> None:
    data = {k: v for k, v in asdict(holds).items() if k not in ("folder", "name")}
    data["updated"] = time.time()
    write_atomic(Path(holds.folder) / MANIFEST, json.dumps(data, indent=2, default=str))


def builds(root: Path, board: str) -> list[Holds]:
    """Every build of `board` under the build root, the most recent first."""
    where = Path(root) / board
    if not where.is_dir():
        return []
    found = [h for d in where.iterdir() if d.is_dir() and not d.name.startswith((".", "_"))
             for h in [read(d)] if h is not None]
    return sorted(found, key=lambda h: h.updated, reverse=True)


def _listing(found: list[Holds]) -> str:
    return ", ".join(f"{h.name}" + ("" if h.name == h.model else f" ({h.model})") for h in found)


def choose(root: Path, board: str, name: str | None = None, model: str | None = None) -> tuple[Holds, str | None]:
    """The build a command acts on: --name's folder; else the build of --model (its own folder first); else the
    only, or the most recent, build of the board. Returns it and a note when others were passed over."""
    root, where = Path(root), Path(root) / board
    found = builds(root, board)
    pick = (f"the builds there: {_listing(found)} (pick one with --name=NAME)" if found else "")
    if name:
        holds = read(where / check_name("name", name))
        if holds is not None:
            return holds, None
        raise PipelineError(f"no build named {name} for {board} in {where}: "
                            + (pick if found else f"run `invoke build --board={board} --name={name}` first"))
    if model:
        holds = read(where / check_name("model", model))
        if holds is not None and holds.model == model:
            return holds, None
        mine = [h for h in found if h.model == model]
        if mine:
            note = (f"{len(mine)} builds of {model} for {board}: {_listing(mine)}; acting on the most recent, "
                    f"{mine[0].name} (pick one with --name=NAME)") if len(mine) > 1 else None
            return mine[0], note
        raise PipelineError(f"no build of {model} for {board} in {where}: "
                            + (pick + f", or run `invoke build --board={board} --model={model}`" if found else
                               f"run `invoke build --board={board} --model={model}` (or `invoke generate "
                               f"--tflite=FILE --board={board}`, whose name is the file's) first"))
    if not found:
        raise PipelineError(f"no build for {board} in {where}: run `invoke build --board={board}` (or `invoke "
                            f"generate --tflite=FILE --board={board}`) first")
    note = None
    if len(found) > 1:
        note = (f"{len(found)} builds for {board} ({_listing(found)}): acting on the most recent, {found[0].name} "
                "(pick another with --name=NAME)")
    return found[0], note


# -- invoke clean ------------------------------------------------------------------------------------------------
@dataclass
class CleanPlan:
    remove: list[Path]
    kept: list[tuple[Path, str]]  # kept paths in the scope and the option that would remove them


def _inside(path: Path, root: Path) -> bool:
    """`path` (its parent resolved, its own name not followed: a symlink is removed, not what it points to) is
    strictly inside the resolved root."""
    real = path.parent.resolve() / path.name
    return real != root and root in real.parents and path.name not in ("", ".", "..")


def check_root(root: Path) -> Path:
    """The build root, resolved; refused where removing under it would remove a user's own files."""
    real = Path(root).resolve()
    cwd = Path.cwd().resolve()
    if real == Path(real.anchor) or real == Path.home().resolve() or real == cwd or real in cwd.parents:
        raise PipelineError(f"--build-dir={root} is {real}, not a build folder: clean removes only build outputs "
                            "(give the build folder, e.g. build)")
    if (real / ".git").exists() or (real / "pyproject.toml").exists():
        raise PipelineError(f"--build-dir={root} holds a source checkout ({real}), not build outputs: clean refuses it")
    return real


def _without(path: Path, keep: set[Path]) -> list[Path]:
    """`path`, or where it holds kept paths, its parts that hold none."""
    if path in keep:
        return []
    if not any(path in k.parents for k in keep):
        return [path]
    return [q for child in sorted(path.iterdir()) for q in _without(child, keep)]


def clean_plan(root: Path, board: str | None = None, model: str | None = None, name: str | None = None,
               history: bool = False, explore: bool = False) -> CleanPlan:
    """What `invoke clean` removes: the build folders of --board/--model/--name (all of the build root without
    them), the model's stage cache when --model names no board, never the run history or an explore study unless
    --history or --explore asks for it, and nothing outside the build root."""
    for option, value in (("board", board), ("model", model), ("name", name)):
        if value is not None:
            check_name(option, value)
    if board in RESERVED:
        raise PipelineError(f"--board={board}: {board} is the tool's own folder, not a board")
    real = check_root(root)
    root = Path(root)
    if not root.is_dir():
        return CleanPlan([], [])
    keep: dict[Path, str] = {}
    if not history:
        keep.update({root / f: "--history" for f in HISTORY_FILES if (root / f).exists()})
    if not explore:
        keep.update({p: "--explore" for p in root.glob(f"*/*/{EXPLORE}") if p.is_dir()})
    if board is None and model is None and name is None:
        scope = sorted(root.iterdir())
    else:
        boards = [root / board] if board else [d for d in sorted(root.iterdir())
                                                if d.is_dir() and d.name not in RESERVED]
        scope = []
        for board_dir in boards:
            if not board_dir.is_dir():
                continue
            for folder in sorted(d for d in board_dir.iterdir() if d.is_dir()):
                holds = read(folder)
                held = holds.model if holds else None
                if name is not None and folder.name != name:
                    continue
                if model is not None and model not in (held, folder.name):
                    continue
                scope.append(folder)
        if model is not None and board is None and name is None:
            scope.append(root / "_models" / model)
    remove = [p for s in scope if s.exists() or s.is_symlink() for p in _without(s, set(keep))]
    for path in remove:
        if not _inside(path, real):
            raise PipelineError(f"clean would remove {path}, which is outside the build folder {real}: nothing removed")
    kept = [(k, why) for k, why in keep.items() if any(k == s or s in k.parents for s in scope)]
    return CleanPlan(remove, kept)


def remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path)


# -- refused runs leave no folders behind ------------------------------------------------------------------------
@contextmanager
def tidy_on_failure(folders: list[Path], root: Path):
    """On failure, remove those of `folders` (and of their parents up to the build root) that this run created and
    left without a file: a refused input leaves no empty folders."""
    root = Path(root)
    created = set()
    for folder in folders:
        for path in (Path(folder), *Path(folder).parents):
            if not path.exists():
                created.add(path)
            if path == root or len(path.parts) <= len(root.parts):
                break
    try:
        yield
    except BaseException:
        for path in sorted(created, key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                for sub, _, _ in sorted(os.walk(path), key=lambda w: len(Path(w[0]).parts), reverse=True):
                    try:
                        os.rmdir(sub)
                    except OSError:  # it holds a file: keep it
                        pass
        raise
