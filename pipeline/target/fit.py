"""Stage 7: does the model fit the board? Flash and RAM against the board file's budgets."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.boards import Board
from pipeline.errors import PipelineError


@dataclass
class FitResult:
    flash_bytes: int  # model + runtime estimate
    flash_budget: int
    ram_bytes: int  # arena + runtime estimate
    ram_budget: int
    fits: bool
    arena_bytes: int = 0
    arena_block_budget: int | None = None  # the largest block the arena can be allocated in, where the board has one

    @property
    def flash_percent(self) -> float:
        return 100.0 * self.flash_bytes / self.flash_budget

    @property
    def ram_percent(self) -> float:
        return 100.0 * self.ram_bytes / self.ram_budget


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def check(board: Board, tflite_bytes: int, arena_bytes: int, input_bytes: int = 0) -> FitResult:
    """Flash: the model, the built-in test sample (one input) and the runtime. RAM: the arena, the benchmark
    harness's input buffer (one input) and the runtime."""
    flash = tflite_bytes + input_bytes + board.runtime_flash_bytes
    ram = arena_bytes + input_bytes + board.runtime_ram_bytes
    block_ok = board.arena_block_bytes is None or arena_bytes <= board.arena_block_bytes
    return FitResult(flash, board.flash_bytes, ram, board.ram_bytes,
                     flash <= board.flash_bytes and ram <= board.ram_bytes and block_ok, arena_bytes,
                     board.arena_block_bytes)


def require(fit: FitResult, board: Board, tflite_bytes: int, arena_bytes: int) -> None:
    problems = []
    if fit.flash_bytes > fit.flash_budget:
        problems.append(
            f"flash {kib(fit.flash_bytes)} > {kib(fit.flash_budget)} (model {kib(tflite_bytes)} + runtime estimate "
            f"{kib(board.runtime_flash_bytes)}); pruned zeros are still stored in a .tflite, so shrink the model "
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
