"""Latency and energy ESTIMATES before flashing: a per-operator cost model per core and kernel family.

Each operator costs `fixed + mac * MACs + out * output elements + in * input elements` in instructions or cycles,
with coefficients per op kind (a 1x1 convolution, a spatial one, a depthwise one, fully connected, pooling,
elementwise, softmax, reshape ... each runs a different kernel). The coefficients are data, one TOML file per
core and kernel family in boards/costs/, each saying where its numbers came from (a calibration run under QEMU,
published kernel benchmarks) and how instructions become cycles. Every figure from here is an estimate and is
labelled so.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.boards import Board
from pipeline.errors import PipelineError
from pipeline.target.graph import Graph, Op

COSTS_DIR = Path(__file__).resolve().parents[2] / "boards" / "costs"
TERMS = ("fixed", "mac", "out", "in", "taps")
POOLS = {"MAX_POOL_2D", "AVERAGE_POOL_2D"}


def features(op: Op) -> dict[str, float]:
    """The work terms of one operator. For pooling, `mac` counts window reads (output elements x window). `taps`
    counts filter taps (output elements x kernel height x width): a convolution's cost per tap besides its
    multiply-accumulates (padding checks, addressing), which dominates with few input channels."""
    out = sum(t.elements for t in op.outputs)
    inp = sum(t.elements for t in op.activation_in)
    if op.kind in POOLS:
        macs = out * op.options.get("filter_h", 1) * op.options.get("filter_w", 1)
    else:
        macs = op.macs
    taps = 0
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and op.weights is not None and len(op.weights.shape) == 4:
        taps = out * op.weights.shape[1] * op.weights.shape[2]
    return {"fixed": 1.0, "mac": float(macs), "out": float(out), "in": float(inp), "taps": float(taps)}


@dataclass
class CostModel:
    name: str  # e.g. cortex-m4f-cmsis-nn
    core: str
    kernels: str
    source: str  # where the numbers came from, printed with every estimate
    unit: str  # "instructions" or "cycles": what the coefficients count
    cycles_per_instruction: float  # 1.0 for a model in cycles
    ops: dict[str, dict[str, float]] = field(default_factory=dict)  # op kind -> term -> coefficient
    path: Path | None = None
    # A cost model in cycles: its own uncertainty as factors on the latency (low, high), where its file states one
    latency_range: tuple[float, float] = (1.0, 1.0)

    def coefficients(self, op: Op) -> tuple[str, dict[str, float]]:
        """The coefficients used for `op`: its own kind (CONV_2D_1X1 falls back to CONV_2D), else `default`."""
        for kind in (op.subkind, op.kind, "default"):
            if kind in self.ops:
                return kind, self.ops[kind]
        raise PipelineError(f"cost model {self.name} has neither [op.{op.kind}] nor [op.default]")

    def units(self, op: Op) -> float:
        """The op's cost in the model's unit (instructions or cycles)."""
        _, coeffs = self.coefficients(op)
        work = features(op)
        return sum(coeffs.get(term, 0.0) * work[term] for term in TERMS)

    def cpi_for(self, board: Board) -> "Cpi":
        """Cycles per instruction on `board`: the one rule (cpi_rule) for a cost model in instructions."""
        if self.unit == "cycles":
            low, high = self.latency_range
            return Cpi(1.0, low, high, "the cost model counts the chip's cycles" + (
                f"; its stated uncertainty x{low:g}-x{high:g}" if (low, high) != (1.0, 1.0) else ""))
        return cpi_rule(self, board)


# ONE rule turns a cost model's instruction counts into a board's cycles, for every board:
#
#     CPI = core CPI + flash wait cycles x exposure
#
# - core CPI: the cost model's [meta] cycles_per_instruction, the core's pipeline on zero-wait memory (an assumption
#   per core: Cortex-M4 1.25, M7 0.8, M0+ 1.4, M33 1.25; see pipeline.calibrate.CPI_NOTE);
# - flash wait cycles: what one flash read waits at the board's clock, from its reference manual (the board file's
#   [estimate] flash_wait_cycles with its source; a range where the datasheet does not say);
# - exposure: the share of instructions that pay that wait behind the board's flash path (code fetches the
#   accelerator or cache misses, weight reads that stream past it), a range per path below.
# The instruction counts themselves are the calibration's (QEMU, TFLM 90b983c + CMSIS-NN 4ab83cc: the cost model's
# source says which); the one fitted figure is the ART exposure, and it is fitted to another stack (microTVM +
# CMSIS-NN), assuming both spend their time in the same CMSIS-NN kernels. The estimate carries the range the rule
# gives (low-high) and its middle.
FLASH_PATHS = {
    "sram": ((0.0, 0.0), "code and weights in zero-wait RAM"),
    "art": ((0.05, 0.10), "STM32 ART accelerator (prefetch + instruction cache, a small data cache); exposure fitted "
                          "to the MLPerf Tiny v1.0 microTVM + CMSIS-NN results on the NUCLEO-L4R5ZI at 120 MHz and 5 "
                          "wait states (KWS 99.8, VWW 301, IC 390, AD 8.6 ms) over this project's QEMU instruction "
                          "counts of the same models: CPI 1.50-1.73, i.e. (CPI - 1.25) / 5"),
    "l1-cache": ((0.02, 0.06), "Cortex-M7 L1 instruction and data caches on the AXI flash interface; exposure ASSUMED "
                               "below the ART's (32-byte cache lines also hold the streamed weights), not measured"),
    "icache": ((0.05, 0.15), "an instruction cache without prefetch, weight reads uncached; exposure ASSUMED from the "
                             "ART's, wider, not measured"),
    "xip-cache": ((0.001, 0.01), "an XIP cache in front of QSPI flash: loops hit, streamed weights miss a line at a "
                                 "time; exposure ASSUMED, not measured"),
}


@dataclass
class Cpi:
    value: float  # the middle of the range: what the point estimate uses
    low: float
    high: float
    source: str


def cpi_rule(model: "CostModel", board: Board) -> Cpi:
    """The rule above for `board` and an instruction-counting cost model."""
    if board.cycles_per_instruction:  # a clock that counts instructions (QEMU -icount): a definition
        c = board.cycles_per_instruction
        return Cpi(c, c, c, f"board {board.name}: {board.cycles_per_instruction_source}")
    core = model.cycles_per_instruction
    if board.flash_wait_cycles is None or board.flash_path is None:
        return Cpi(core, core, core, f"core CPI {core:g} of cost model {model.name} only: board {board.name} gives "
                                     "no [estimate] flash_wait_cycles and flash_path, so flash waits are not counted")
    (w_lo, w_hi), ((e_lo, e_hi), path_note) = board.flash_wait_cycles, FLASH_PATHS[board.flash_path]
    low, high = core + w_lo * e_lo, core + w_hi * e_hi
    waits = f"{w_lo:g}" if w_lo == w_hi else f"{w_lo:g}-{w_hi:g}"
    return Cpi(round((low + high) / 2, 3), round(low, 3), round(high, 3),
               f"rule: core {core:g} ({model.core}) + {waits} flash wait cycles at {board.clock_mhz} MHz x exposure "
               f"{e_lo:g}-{e_hi:g} ({board.flash_path}: {path_note}); board facts: {board.estimate_source}")


@dataclass
class OpEstimate:
    index: int
    op: str
    cost_class: str  # the cost model entry used
    cycles: float
    us: float


@dataclass
class Estimate:
    """A latency and energy ESTIMATE for one model on one board."""
    board: str
    cost_model: str
    source: str
    clock_mhz: int
    per_op: list[OpEstimate]
    latency_us: float
    energy_uj: float | None  # active power x latency, where the board file gives a power
    cycles_per_instruction: float = 1.0
    cpi_source: str = ""
    label: str = "estimate"
    # The range the CPI rule gives (the same instructions at the low and high CPI)
    cpi_low: float = 1.0
    cpi_high: float = 1.0
    latency_low_us: float = 0.0
    latency_high_us: float = 0.0


def load(path: Path) -> CostModel:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PipelineError(f"cost model {path} cannot be read: {exc}") from None
    where = f"cost model {path}"
    meta = data.get("meta")
    if not isinstance(meta, dict):
        raise PipelineError(f"{where}: missing table [meta]")
    for key in ("core", "kernels", "source", "unit"):
        if not isinstance(meta.get(key), str):
            raise PipelineError(f"{where} [meta]: missing field '{key}'")
    if meta["unit"] not in ("instructions", "cycles"):
        raise PipelineError(f"{where} [meta]: unit must be instructions or cycles (got {meta['unit']!r})")
    cpi = meta.get("cycles_per_instruction", 1.0)
    if isinstance(cpi, bool) or not isinstance(cpi, (int, float)) or cpi <= 0:
        raise PipelineError(f"{where} [meta]: cycles_per_instruction must be a positive number (got {cpi!r})")
    ops = {}
    for kind, coeffs in (data.get("op") or {}).items():
        if not isinstance(coeffs, dict) or any(k not in TERMS for k in coeffs) or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in coeffs.values()):
            raise PipelineError(f"{where} [op.{kind}]: coefficients are non-negative numbers named "
                                f"{', '.join(TERMS)}")
        ops[kind] = {k: float(v) for k, v in coeffs.items()}
    if "default" not in ops:
        raise PipelineError(f"{where}: needs an [op.default] entry for op kinds it does not list")
    spread = meta.get("latency_range", [1.0, 1.0])
    if (not isinstance(spread, list) or len(spread) != 2 or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in spread) or spread[0] > 1
            or spread[1] < 1):
        raise PipelineError(f"{where} [meta]: latency_range must be [low <= 1, high >= 1] (got {spread!r})")
    return CostModel(Path(path).stem, meta["core"], meta["kernels"], meta["source"], meta["unit"],
                     float(cpi) if meta["unit"] == "instructions" else 1.0, ops, Path(path),
                     (float(spread[0]), float(spread[1])))


def for_board(board: Board) -> CostModel:
    path = COSTS_DIR / f"{board.core}-{board.kernels}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in COSTS_DIR.glob("*.toml")))
        raise PipelineError(f"board {board.name}: no cost model for core {board.core} with {board.kernels} kernels "
                            f"(boards/costs/ has {known}); add {path.name} or pick a core and kernels listed")
    return load(path)


def estimate(graph: Graph, board: Board, model: CostModel | None = None) -> Estimate:
    model = model or for_board(board)
    cpi = model.cpi_for(board)
    per_op = []
    for op in graph.ops:
        cycles = model.units(op) * cpi.value
        per_op.append(OpEstimate(op.index, op.kind, model.coefficients(op)[0], cycles, cycles / board.clock_mhz))
    latency = sum(e.us for e in per_op)
    energy = board.active_power_mw * latency / 1000.0 if board.active_power_mw else None
    return Estimate(board.name, model.name, model.source, board.clock_mhz, per_op, latency, energy, cpi.value,
                    cpi.source, "estimate", cpi.low, cpi.high, latency * cpi.low / cpi.value,
                    latency * cpi.high / cpi.value)
