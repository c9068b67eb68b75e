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
# The work terms an operator's cost is a sum of (see features)
TERMS = ("fixed", "mac", "out", "in", "taps", "pixels", "pixel_taps", "im2col", "weights")
POOLS = {"MAX_POOL_2D", "AVERAGE_POOL_2D"}
REDUCTIONS = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"}  # one window over the reduced axes

# Cost classes: one per code path of the kernels, named after CMSIS-NN's dispatch (arm_convolve_wrapper_s8,
# arm_depthwise_conv_wrapper_s8, arm_fully_connected_wrapper_s8 and TFLM's cmsis_nn/*.cc, CMSIS-NN 4ab83cc):
# - CONV_2D_1X1: 1x1 kernel, no padding, dilation 1, stride 1 (arm_convolve_1x1_s8_fast);
#   CONV_2D_1X1_STRIDED: the same with a stride (arm_convolve_1x1_s8);
#   CONV_2D_1XN: input and kernel one row high, (stride x input channels) % 4 == 0 (arm_convolve_1_x_n_s8);
#   CONV_2D: every other convolution (arm_convolve_s8: im2col + matrix multiply);
# - DEPTHWISE_CONV_2D_3X3: depth multiplier 1, dilation 1, 3x3 kernel, padding <= 1 (arm_depthwise_conv_3x3_s8);
#   DEPTHWISE_CONV_2D_OPT: depth multiplier 1, dilation 1, any other kernel, e.g. k x 1 (arm_depthwise_conv_s8_opt);
#   DEPTHWISE_CONV_2D: depth multiplier > 1 (arm_depthwise_conv_s8); DEPTHWISE_CONV_2D_DILATED: dilation > 1, the
#   same function's dilated loops, which cost per output element far more than their taps (measured on the grid:
#   ~295 instructions an output element on the Cortex-M7 for 3x3 and 5x1 kernels alike);
# - FULLY_CONNECTED: one weight scale per output channel (arm_fully_connected_per_channel_s8);
#   FULLY_CONNECTED_PER_TENSOR: one scale for the tensor (arm_fully_connected_s8);
# - every other op kind is its own class.
# The reference kernels (Cortex-M0+) branch less; a cost model that does not list a class uses the next one of its
# chain here, then the op kind's.
FALLBACK = {"CONV_2D_1X1_STRIDED": "CONV_2D_1X1", "CONV_2D_1XN": "CONV_2D", "CONV_2D_1X1": "CONV_2D",
            "DEPTHWISE_CONV_2D_3X3": "DEPTHWISE_CONV_2D", "DEPTHWISE_CONV_2D_OPT": "DEPTHWISE_CONV_2D",
            "DEPTHWISE_CONV_2D_DILATED": "DEPTHWISE_CONV_2D",
            "FULLY_CONNECTED_PER_TENSOR": "FULLY_CONNECTED"}
# An op kind a cost model has no rule for is estimated by the nearest rule it has, and the estimate says so:
# elementwise ops by ADD's, reductions by average pooling's, data movement by a copy's, anything else by default.
NEAREST = {"SUB": "ADD", "MUL": "ADD", "SQUARED_DIFFERENCE": "ADD", "MAXIMUM": "ADD", "MINIMUM": "ADD",
           "LOGISTIC": "SOFTMAX", "TANH": "SOFTMAX", "LOG_SOFTMAX": "SOFTMAX", "HARD_SWISH": "SOFTMAX",
           "RELU": "QUANTIZE", "RELU6": "QUANTIZE", "LEAKY_RELU": "QUANTIZE", "DEQUANTIZE": "QUANTIZE",
           "MEAN": "AVERAGE_POOL_2D", "SUM": "AVERAGE_POOL_2D", "REDUCE_MAX": "MAX_POOL_2D",
           "CONCATENATION": "RESHAPE", "PACK": "RESHAPE", "UNPACK": "RESHAPE", "SPLIT": "RESHAPE",
           "SPLIT_V": "RESHAPE", "STRIDED_SLICE": "RESHAPE", "SLICE": "RESHAPE", "PAD": "RESHAPE",
           "TRANSPOSE": "RESHAPE", "SQUEEZE": "RESHAPE", "EXPAND_DIMS": "RESHAPE",
           "TRANSPOSE_CONV": "CONV_2D", "BATCH_MATMUL": "FULLY_CONNECTED",
           # per-channel fully connected runs CMSIS-NN's same s8 loop as per-tensor with a scale per output
           "FULLY_CONNECTED": "FULLY_CONNECTED_PER_TENSOR"}


def cost_class(op: Op) -> str:
    """The kernel code path `op` runs (see FALLBACK's comment)."""
    o, w = op.options, op.weights
    dilated = o.get("dilation_h", 1) != 1 or o.get("dilation_w", 1) != 1
    if op.kind == "CONV_2D" and w is not None and len(w.shape) == 4:
        kh, kw, cin = w.shape[1], w.shape[2], w.shape[3]
        if (kh, kw) == (1, 1) and not dilated:
            return "CONV_2D_1X1" if (o.get("stride_h", 1), o.get("stride_w", 1)) == (1, 1) else "CONV_2D_1X1_STRIDED"
        inp = op.activation_in[0].shape if op.activation_in else ()
        if (len(inp) == 4 and inp[1] == 1 and kh == 1 and o.get("dilation_w", 1) == 1
                and (o.get("stride_w", 1) * cin) % 4 == 0):
            return "CONV_2D_1XN"
        return "CONV_2D"
    if op.kind == "DEPTHWISE_CONV_2D" and w is not None and len(w.shape) == 4:
        cin = op.activation_in[0].shape[-1] if op.activation_in else w.shape[3]
        if dilated:
            return "DEPTHWISE_CONV_2D_DILATED"
        if w.shape[3] != cin:  # TFLM's depth multiplier is output / input channels
            return "DEPTHWISE_CONV_2D"
        return "DEPTHWISE_CONV_2D_3X3" if w.shape[1:3] == (3, 3) else "DEPTHWISE_CONV_2D_OPT"
    if op.kind == "FULLY_CONNECTED" and w is not None and not w.per_channel:
        return "FULLY_CONNECTED_PER_TENSOR"
    return op.kind


def features(op: Op) -> dict[str, float]:
    """The work terms of one operator. For pooling, `mac` counts window reads (output elements x window; a reduction's window is the whole input). `taps`
    counts filter taps (output elements x kernel height x width): a convolution's cost per tap besides its
    multiply-accumulates (padding checks, addressing), which dominates with few input channels. `pixels` counts
    output positions (elements / channels), `pixel_taps` output positions x kernel height x width (CMSIS-NN's
    im2col copies one run of input channels per tap and position), `im2col` the elements those copies move
    (pixel_taps x input channels), `weights` the weight tensor's elements (CMSIS-NN's matrix multiplies sum each
    output channel's weights once per call, which matters where there are few output positions)."""
    out = sum(t.elements for t in op.outputs)
    inp = sum(t.elements for t in op.activation_in)
    if op.kind in POOLS:
        macs = out * op.options.get("filter_h", 1) * op.options.get("filter_w", 1)
    elif op.kind in REDUCTIONS:
        macs = op.activation_in[0].elements if op.activation_in else 0
    else:
        macs = op.macs
    taps = pixels = pixel_taps = im2col = 0
    shape = op.outputs[0].shape if op.outputs else ()
    if len(shape) == 4:
        pixels = shape[0] * shape[1] * shape[2]
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and op.weights is not None and len(op.weights.shape) == 4:
        kh, kw = op.weights.shape[1], op.weights.shape[2]
        taps = out * kh * kw
        pixel_taps = pixels * kh * kw
        cin = op.activation_in[0].shape[-1] if op.activation_in else op.weights.shape[3]
        im2col = pixel_taps * cin
    weights = op.weights.elements if op.weights is not None else 0
    return {"fixed": 1.0, "mac": float(macs), "out": float(out), "in": float(inp), "taps": float(taps),
            "pixels": float(pixels), "pixel_taps": float(pixel_taps), "im2col": float(im2col),
            "weights": float(weights)}


def cost(coefficients: dict[str, float], work: dict[str, float]) -> float:
    return sum(coefficients.get(term, 0.0) * work.get(term, 0.0) for term in TERMS)


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

    def rule(self, klass: str, kind: str) -> tuple[str, dict[str, float], str]:
        """The rule used for an op of cost class `klass` and kind `kind`: its class, else the next of its chain
        (FALLBACK), else the nearest kind's (NEAREST), else `default`, with a note where the rule is not the op's
        own kind's ("" when it is)."""
        chain = [klass]
        while chain[-1] in FALLBACK:
            chain.append(FALLBACK[chain[-1]])
        for name in dict.fromkeys(chain + [kind]):
            if name in self.ops:
                return name, self.ops[name], ""
        nearest = NEAREST.get(kind)
        if nearest and nearest in self.ops:
            return nearest, self.ops[nearest], (f"no rule for {kind} in cost model {self.name}: estimated by the "
                                                f"{nearest} rule")
        if "default" in self.ops:
            return "default", self.ops["default"], (f"no rule for {kind} in cost model {self.name}: estimated by its "
                                                    "default rule")
        raise PipelineError(f"cost model {self.name} has neither [op.{kind}] nor [op.default]")

    def coefficients(self, op: Op) -> tuple[str, dict[str, float]]:
        """The rule's name and coefficients used for `op` (see rule)."""
        name, coeffs, _ = self.rule(cost_class(op), op.kind)
        return name, coeffs

    def units(self, op: Op) -> float:
        """The op's cost in the model's unit (instructions or cycles)."""
        return cost(self.coefficients(op)[1], features(op))

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
    note: str = ""  # where the op kind has no rule of its own: which rule estimated it


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
        name, coeffs, note = model.rule(cost_class(op), op.kind)
        cycles = cost(coeffs, features(op)) * cpi.value
        per_op.append(OpEstimate(op.index, op.kind, name, cycles, cycles / board.clock_mhz, note))
    latency = sum(e.us for e in per_op)
    energy = board.active_power_mw * latency / 1000.0 if board.active_power_mw else None
    return Estimate(board.name, model.name, model.source, board.clock_mhz, per_op, latency, energy, cpi.value,
                    cpi.source, "estimate", cpi.low, cpi.high, latency * cpi.low / cpi.value,
                    latency * cpi.high / cpi.value)
