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
    return FitResult(flash, board.flash_bytes, ram, board.ram_bytes,
                     flash <= board.flash_bytes and ram <= board.ram_bytes)


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
            f"{kib(board.runtime_ram_bytes)}); the arena holds activations, so use a smaller --width or input"
        )
    if problems:
        raise PipelineError(f"the model does not fit {board.name}: " + "; ".join(problems) + " (or pick a larger board)")
