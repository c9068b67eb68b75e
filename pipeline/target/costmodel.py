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

    def cpi_for(self, board: Board) -> tuple[float, str]:
        """Cycles per instruction: the board's own figure where its file gives one, else the core-level assumption."""
        if self.unit == "cycles":
            return 1.0, "the cost model counts cycles"
        if board.cycles_per_instruction:
            return board.cycles_per_instruction, f"board {board.name}: {board.cycles_per_instruction_source}"
        return self.cycles_per_instruction, f"cost model {self.name}'s assumption"


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
    return CostModel(Path(path).stem, meta["core"], meta["kernels"], meta["source"], meta["unit"],
                     float(cpi) if meta["unit"] == "instructions" else 1.0, ops, Path(path))


def for_board(board: Board) -> CostModel:
    path = COSTS_DIR / f"{board.core}-{board.kernels}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in COSTS_DIR.glob("*.toml")))
        raise PipelineError(f"board {board.name}: no cost model for core {board.core} with {board.kernels} kernels "
                            f"(boards/costs/ has {known}); add {path.name} or pick a core and kernels listed")
    return load(path)


def estimate(graph: Graph, board: Board, model: CostModel | None = None) -> Estimate:
    model = model or for_board(board)
    cpi, cpi_source = model.cpi_for(board)
    per_op = []
    for op in graph.ops:
        cycles = model.units(op) * cpi
        per_op.append(OpEstimate(op.index, op.kind, model.coefficients(op)[0], cycles, cycles / board.clock_mhz))
    latency = sum(e.us for e in per_op)
    energy = board.active_power_mw * latency / 1000.0 if board.active_power_mw else None
    return Estimate(board.name, model.name, model.source, board.clock_mhz, per_op, latency, energy, cpi, cpi_source)
