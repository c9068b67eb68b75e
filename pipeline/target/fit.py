"""Stage 7: does the model fit the board? Flash and RAM against the board file's budgets."""
from __future__ import annotations

from dataclasses import dataclass

import tomllib

from pipeline.boards import BOARDS_DIR, Board
from pipeline.errors import PipelineError

KERNEL_FLASH_DIR = BOARDS_DIR / "facts" / "kernel_flash"


@dataclass
class RuntimeFlash:
    """The flash the firmware takes besides the model, for the ops this model registers, and where it came from."""
    bytes: int
    source: str


def kernel_tables(board: Board) -> list[dict]:
    """The measured flash of each op's kernels for the board's core and kernels, where measured: the table measured
    in the board's framework's own build (`<core>-<kernels>-<framework>.toml`: its TFLM snapshot and flags) first,
    then the generic one."""
    tables = []
    for path in (KERNEL_FLASH_DIR / f"{board.core}-{board.kernels}-{board.framework}.toml",
                 KERNEL_FLASH_DIR / f"{board.core}-{board.kernels}.toml"):
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PipelineError(f"kernel size table {path} cannot be read: {exc}") from None
        ops = data.get("ops")
        if not isinstance(ops, dict) or not isinstance(data.get("meta", {}).get("source"), str) or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in ops.values()):
            raise PipelineError(f"kernel size table {path}: needs [meta] source and [ops] OP = bytes (integers >= 0)")
        tables.append({"ops": ops, "source": data["meta"]["source"], "path": path})
    return tables


def kernel_table(board: Board) -> dict | None:
    """The board's first kernel size table (kernel_tables), or None."""
    return next(iter(kernel_tables(board)), None)


def runtime_flash(board: Board, ops: list[str] | None = None) -> RuntimeFlash:
    """The board's measured runtime, with its allowance for other ops replaced by the kernels of the ops the model
    registers (the ones it adds, less the ones the measured build had and the model does not), where the board's
    core and kernels have a measured table and every op is in it; else the board file's figure as it is."""
    tables = kernel_tables(board) if ops is not None and board.runtime_ops is not None else []
    if not tables:
        return RuntimeFlash(board.runtime_flash_bytes, board.runtime_source)
    have, want = set(board.runtime_ops), set(ops)
    # The first table that has every op (a framework's own table may cover fewer ops than the generic one).
    table = next((t for t in tables if all(op in t["ops"] for op in have | want)), tables[0])
    missing = sorted(op for op in have | want if op not in table["ops"])
    if missing:
        return RuntimeFlash(board.runtime_flash_bytes, board.runtime_source + f" (kept: {', '.join(missing)} not in "
                                                                              f"{table['path'].name})")
    added, dropped = sorted(want - have), sorted(have - want)
    size = (board.runtime_flash_bytes - board.runtime_other_ops_bytes + sum(table["ops"][o] for o in added)
            - sum(table["ops"][o] for o in dropped))
    change = ", ".join([f"+{table['ops'][o]} {o}" for o in added] + [f"-{table['ops'][o]} {o}" for o in dropped])
    return RuntimeFlash(size, f"{board.runtime_source.split(', + ')[0]}, without its {board.runtime_other_ops_bytes} B "
                              f"allowance for other ops; this model's kernels: {change or 'the same ops'} ({table['source']})")


@dataclass
class FitResult:
    flash_bytes: int  # model + runtime estimate
    flash_budget: int
    ram_bytes: int  # arena + runtime estimate
    ram_budget: int
    fits: bool
    arena_bytes: int = 0
    runtime_flash_bytes: int = 0
    runtime_flash_source: str = ""
    arena_block_budget: int | None = None  # the largest block the arena can be allocated in, where the board has one

    @property
    def flash_percent(self) -> float:
        return 100.0 * self.flash_bytes / self.flash_budget

    @property
    def ram_percent(self) -> float:
        return 100.0 * self.ram_bytes / self.ram_budget


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def check(board: Board, tflite_bytes: int, arena_bytes: int, input_bytes: int = 0,
          ops: list[str] | None = None) -> FitResult:
    """Flash: the model, the built-in test sample (one input) and the runtime (for the ops the model registers,
    where known). RAM: the arena, the benchmark harness's input buffer (one input) and the runtime."""
    runtime = runtime_flash(board, ops)
    flash = tflite_bytes + input_bytes + runtime.bytes
    ram = arena_bytes + input_bytes + board.runtime_ram_bytes
    block_ok = board.arena_block_bytes is None or arena_bytes <= board.arena_block_bytes
    return FitResult(flash, board.flash_bytes, ram, board.ram_bytes,
                     flash <= board.flash_bytes and ram <= board.ram_bytes and block_ok, arena_bytes=arena_bytes,
                     runtime_flash_bytes=runtime.bytes, runtime_flash_source=runtime.source,
                     arena_block_budget=board.arena_block_bytes)


def require(fit: FitResult, board: Board, tflite_bytes: int, arena_bytes: int) -> None:
    problems = []
    if fit.flash_bytes > fit.flash_budget:
        problems.append(
            f"flash {kib(fit.flash_bytes)} > {kib(fit.flash_budget)} (model {kib(tflite_bytes)} + runtime estimate "
            f"{kib(fit.runtime_flash_bytes)}); pruned zeros are still stored in a .tflite, so shrink the model "
            "with a smaller --width"
        )
    if fit.ram_bytes > fit.ram_budget:
        problems.append(
            f"RAM {kib(fit.ram_bytes)} > {kib(fit.ram_budget)} (arena {kib(arena_bytes)} + runtime estimate "
            f"{kib(board.runtime_ram_bytes)}; the budget is what the linker has: {board.ram_source or 'the board file'})"
            "; the arena holds activations, so use a smaller --width or input"
        )
    if fit.arena_block_budget is not None and fit.arena_bytes > fit.arena_block_budget:
        problems.append(
            f"arena {kib(fit.arena_bytes)} > {kib(fit.arena_block_budget)}, the largest block {board.name}'s firmware "
            f"can allocate it in ({board.ram_source or 'its heap'}); use a smaller --width or input"
        )
    if problems:
        raise PipelineError(f"the model does not fit {board.name}: " + "; ".join(problems) + " (or pick a larger board)")
