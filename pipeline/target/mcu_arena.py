"""The tensor arena TFLM needs on a board's 32-bit core, to the byte, computed on the host.

TFLM's arena is a persistent tail (its allocator, one TfLiteEvalTensor per tensor, one NodeAndRegistration per
operator, the operators' builtin parameters and kernel op data, per-channel quantization arrays, the interpreter's
input and output TfLiteTensors) and a non-persistent head planned by its GreedyMemoryPlanner (activations and the
kernels' scratch buffers). The host runtime (pip tflite_micro) is 64-bit and runs the reference kernels, so its
RecordingMicroAllocator figures are larger than a Cortex-M's; here:

- the tail on a 32-bit core is replayed allocation by allocation in TFLM's order, each with its size and alignment
  on that core (sizeof from TFLM 90b983c and CMSIS-NN 4ab83cc compiled with arm-none-eabi-g++ 12.2; AAPCS enums
  are short, so several parameter structs are a few bytes);
- the head is TFLM's GreedyMemoryPlanner replayed exactly (same order, same gaps), with the board kernels' scratch
  requests as buffers alive for their operator only, placed around the offline-planned tensors where the model
  carries a plan (so a large scratch request often costs nothing: str_ww's 3,840-byte depthwise scratch fits beside
  the tensors).

The arena must also hold the peak DURING AllocateTensors, which `arena_used_bytes()` (the final tail + head) does
not show: while planning, the head holds the scratch requests' buffer, one AllocationInfo per tensor and scratch
buffer, and the planner's 40 bytes per planned buffer, on top of the tail so far. A small model with many tensors
peaks there: the anomaly-detection autoencoder (31 tensors, 10 ops) needs 4,640 bytes on the host although its
recording says 3,984 (the same rule with the 64-bit sizes gives 4,640, what bisecting found), and 3,024 on a
Cortex-M although arena_used_bytes() is 2,580.

On the host the recorded tail is used as it is (64-bit sizes) and only the planning peak is added.
"""
from __future__ import annotations

from pathlib import Path

import re
from dataclasses import asdict, dataclass, field

ALIGN = 16  # MicroArenaBufferAlignment()
MAX_SCRATCH_PER_OP = 12  # kMaxScratchBuffersPerOp: the resizable buffer keeps room for the next op's requests
PLANNER_BYTES_PER_BUFFER = 40  # GreedyMemoryPlanner::per_buffer_size(): ints only, the same on 32 and 64 bits

# sizeof of TFLM's structs that the planning peak and the host's late allocations count (TF_LITE_STATIC_MEMORY):
# x86-64 g++ 12 (the host runtime) and arm-none-eabi-g++ 12.2 (Cortex-M).
STRUCTS = {
    64: {"tflite_tensor": 64, "affine_quant": 24, "allocation_info": 32, "scratch_request": 16, "pointer": 8},
    32: {"tflite_tensor": 32, "affine_quant": 12, "allocation_info": 24, "scratch_request": 12, "pointer": 4},
}

# What each operator leaves in the persistent tail on a 32-bit core (TFLM 90b983c + CMSIS-NN 4ab83cc, sizeof from
# arm-none-eabi-g++ 12.2, whose AAPCS enums are short, so several builtin parameter structs shrink to bytes):
# (builtin parameters: size, alignment), kernel op data from Init (16-byte aligned) for the reference kernels and
# for CMSIS-NN's (None: no Init allocation). Per-channel output multipliers and shifts are two more 16-byte aligned
# arrays of 4 bytes a channel, allocated in Prepare (conv, depthwise, per-channel fully connected).
OPS_32 = {
    "CONV_2D": ((28, 4), 56, 60),
    "DEPTHWISE_CONV_2D": ((28, 4), 56, 60),
    "FULLY_CONNECTED": ((5, 1), 48, 72),
    "AVERAGE_POOL_2D": ((40, 4), 32, 36),
    "MAX_POOL_2D": ((40, 4), 32, 36),
    "SOFTMAX": ((4, 4), 56, 64),
    "ADD": ((2, 1), 60, 60),
    "MUL": ((1, 1), 36, 36),
    "RESHAPE": ((36, 4), None, None),
    "SQUEEZE": ((36, 4), None, None),
    "CONCATENATION": ((8, 4), 24, 24),
    "MEAN": ((1, 1), 44, 44),
    "QUANTIZE": ((0, 1), 32, 32),
}
# An operator missing from the table: assumed to keep 64 bytes of op data and 40 of parameters (an estimate; the
# rule names such operators).
UNKNOWN_OP = ((40, 4), 64, 64)
PER_CHANNEL_ARRAYS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
# The allocator's own objects on a 32-bit core, in the order MicroAllocator::Create makes them:
# SingleArenaBufferAllocator 36, GreedyMemoryPlanner 44, MicroAllocator 36; then StartModelAllocation's builtin data
# allocator 8 and one SubgraphAllocations 8.
ALLOCATOR_32 = [(36, 4), (44, 4), (36, 4), (8, 4), (8, 4)]

_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_HEAD = re.compile(r"Arena allocation head (\d+) bytes")
_TAIL = re.compile(r"Arena allocation tail (\d+) bytes")
_KIND = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) ")


# The device measurements the rule is checked against (pipeline.bench.arena_check), kept per core and kernels
FACTS_DIR = Path(__file__).resolve().parents[2] / "boards" / "facts" / "arena"


def align(n: int, to: int = ALIGN) -> int:
    return (n + to - 1) // to * to


@dataclass
class Recording:
    """What the host's RecordingMicroAllocator printed: totals and, per kind, (used, requested, count)."""
    total: int
    head: int
    tail: int
    kinds: dict[str, list[int]] = field(default_factory=dict)

    def used(self, kind: str) -> int:
        return self.kinds.get(kind, [0, 0, 0])[0]

    def count(self, kind: str) -> int:
        return self.kinds.get(kind, [0, 0, 0])[2]


def parse_recording(log: str) -> Recording | None:
    found = [rx.search(log) for rx in (_TOTAL, _HEAD, _TAIL)]
    if not all(found):
        return None
    kinds = {m.group(1): [int(m.group(2)), int(m.group(3)), int(m.group(4))] for m in _KIND.finditer(log)}
    return Recording(*(int(m.group(1)) for m in found), kinds)


@dataclass
class Buffer:
    """One buffer TFLM's planner places: bytes (unaligned), first and last allocation scope, offline offset."""
    size: int
    first: int
    last: int
    offline: int = -1


@dataclass
class ModelLayout:
    """What the rule reads of a model, independent of the board: JSON-able, kept with the device measurements."""
    tensors: int  # every tensor of the subgraph (AllocationInfo counts weights too)
    ops: list[str]  # operator kinds in execution order
    inputs: int
    outputs: int
    buffers: list[Buffer]  # the activations, in tensor order, with TFLM's lifetimes
    channels: list[int] = field(default_factory=list)  # per op: channels of its per-channel arrays, 0 for none
    zero_points: list[int] = field(default_factory=list)  # per model input then output: its zero points
    # per op: the zero points of each tensor it reads or writes (0: not quantized), which its Prepare holds as
    # temporary TfLiteTensors in the head
    op_zero_points: list[list[int]] = field(default_factory=list)
    # per op: the scratch buffers TFLM's reference kernel requests itself (bytes), on every target: MEAN and SUM's
    # int8 accumulator, input index and axis arrays (reduce_common.cc)
    op_scratch: list[list[int]] = field(default_factory=list)

    def unknown_ops(self) -> list[str]:
        return sorted({k for k in self.ops if k not in OPS_32})


def layout(g) -> ModelLayout:
    """TFLM's AllocationInfo of a graph (pipeline.target.graph.Graph): scope 0 for the model inputs, op i at scope
    i + 1; every non-constant tensor with bytes is planned."""
    from pipeline.target import memplan

    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in g.inputs:
        first[t.index] = last[t.index] = 0
    for op in g.ops:
        scope = op.index + 1
        for t in op.outputs:
            first.setdefault(t.index, scope)
        for t in op.activation_in:
            last[t.index] = scope
        for t in op.outputs:
            last[t.index] = max(last.get(t.index, scope), scope)
    end = len(g.ops)
    for t in g.outputs:
        first.setdefault(t.index, end)
        last[t.index] = end
    offsets = memplan.planned_offsets(g.path.read_bytes()) if g.path else None
    buffers = []
    for t in g.tensors:
        if t.constant or t.bytes == 0 or t.index not in first:
            continue
        offline = offsets[t.index] if offsets and t.index < len(offsets) else -1
        buffers.append(Buffer(t.bytes, first[t.index], last.get(t.index, first[t.index]), offline))
    channels = []
    for op in g.ops:
        w = op.weights
        arrays = op.kind in PER_CHANNEL_ARRAYS and w is not None and (op.kind != "FULLY_CONNECTED" or w.per_channel)
        channels.append(int(w.shape[-1] if op.kind == "DEPTHWISE_CONV_2D" else w.shape[0]) if arrays else 0)
    zero_points = [max(1, t.zero_points) for t in list(g.inputs) + list(g.outputs)]
    op_zero_points = [[t.zero_points for t in op.inputs + op.outputs if t is not None] for op in g.ops]
    op_scratch = []
    for op in g.ops:
        requests = []
        if op.kind in ("MEAN", "SUM") and len(op.inputs) > 1 and op.inputs[1] is not None:
            data_in, axis, out = op.inputs[0], op.inputs[1], op.outputs[0]
            if data_in.dtype in ("INT8", "INT16"):
                requests.append(4 * out.elements)
            requests += [4 * len(data_in.shape), 4 * axis.elements]
        op_scratch.append([r for r in requests if r > 0])
    return ModelLayout(len(g.tensors), [op.kind for op in g.ops], len(g.inputs), len(g.outputs), buffers,
                       channels, zero_points, op_zero_points, op_scratch)


def greedy_head(buffers: list[Buffer]) -> int:
    """TFLM's GreedyMemoryPlanner: offline buffers at their offsets first, then the online ones largest first
    (a stable sort of the online buffers taken in reverse order), each in the lowest gap among the buffers alive
    with it, in offset order. Returns the head it needs."""
    sizes = [align(b.size) for b in buffers]
    offline = [i for i, b in enumerate(buffers) if b.offline >= 0]
    online = [i for i, b in enumerate(buffers) if b.offline < 0][::-1]
    online.sort(key=lambda i: -sizes[i])  # Python's sort is stable, as TFLM's bubble sort is
    placed: list[tuple[int, int]] = []  # (offset, buffer), kept in offset order
    for n, i in enumerate(offline + online):
        b = buffers[i]
        if b.offline >= 0:
            offset = b.offline
        elif n == 0:
            offset = 0
        else:
            offset = 0
            for start, j in placed:
                o = buffers[j]
                if o.first > b.last or b.first > o.last:
                    continue
                if start - offset >= sizes[i]:
                    break
                offset = max(offset, start + sizes[j])
        k = 0
        while k < len(placed) and placed[k][0] <= offset:
            k += 1
        placed.insert(k, (offset, i))
    return max((off + sizes[i] for off, i in placed), default=0)


def scratch_requests(m: ModelLayout, board_scratch_per_op: list[int]) -> list[list[int]]:
    """Per op, the scratch buffers requested in TFLM's order: the reference kernel's own, then what the board's
    optimized kernel asks beyond them (pipeline.target.kernels)."""
    ops = max(len(m.ops), len(board_scratch_per_op))
    own = m.op_scratch + [[]] * (ops - len(m.op_scratch))
    extra = list(board_scratch_per_op) + [0] * (ops - len(board_scratch_per_op))
    return [list(own[i]) + ([extra[i]] if extra[i] > 0 else []) for i in range(ops)]


def with_scratch(m: ModelLayout, scratch_per_op: list[int]) -> list[Buffer]:
    """The model's buffers and each scratch request, alive for its op only."""
    return list(m.buffers) + [Buffer(s, op + 1, op + 1) for op, sizes in enumerate(scratch_requests(m, scratch_per_op))
                              for s in sizes]


@dataclass
class ArenaRule:
    """The arena of one model on one side (64-bit host or 32-bit MCU), with what makes it."""
    bits: int
    tail_bytes: int  # persistent: structs, kernel data, the allocator itself
    head_bytes: int  # the planned activations and scratch
    planning_bytes: int  # the peak during AllocateTensors (planning the head, or a kernel's Prepare)
    need_bytes: int  # max(tail + head, planning), a multiple of 16
    used_bytes: int  # what arena_used_bytes() reports after AllocateTensors: tail + head


class _Tail:
    """TFLM's SingleArenaBufferAllocator tail: each allocation goes down from the end and is aligned down."""

    def __init__(self):
        self.used = 0

    def take(self, size: int, alignment: int) -> None:
        self.used = -(-(self.used + size) // alignment) * alignment


def tail_32(m: ModelLayout, kernels: str, scratch_requests: list[list[int]]) -> tuple[int, int, int]:
    """The persistent section on a 32-bit core, replayed allocation by allocation in TFLM's order. Returns the tail
    at memory planning, the tail after AllocateTensors, and the peak of tail + head while the kernels prepare (the
    scratch requests' buffer and the op's tensors as temporary TfLiteTensors in the head)."""
    column = 2 if kernels == "cmsis-nn" else 1
    tail = _Tail()
    for size, alignment in ALLOCATOR_32:
        tail.take(size, alignment)
    tail.take(12 * m.tensors, 4)  # TfLiteEvalTensor
    tail.take(32 * len(m.ops), 4)  # NodeAndRegistration
    for kind in m.ops:  # builtin parameters, parsed in op order
        (size, alignment) = OPS_32.get(kind, UNKNOWN_OP)[0]
        if size:
            tail.take(size, alignment)
    for kind in m.ops:  # kernel Init: op data
        op_data = OPS_32.get(kind, UNKNOWN_OP)[column]
        if op_data:
            tail.take(op_data, ALIGN)
    prepare = 0
    requested = 0
    for op, channels in enumerate(m.channels):  # kernel Prepare: per-channel output multipliers and shifts
        if channels:
            tail.take(4 * channels, ALIGN)
            tail.take(4 * channels, ALIGN)
        temps = sum(32 + (16 + 4 * z if z else 0) for z in (m.op_zero_points[op] if op < len(m.op_zero_points)
                                                            else []))
        prepare = max(prepare, tail.used + (requested + MAX_SCRATCH_PER_OP) * 12 + temps)
        requested += len(scratch_requests[op]) if op < len(scratch_requests) else 0
    if requested:
        tail.take(4 * requested, 4)  # ScratchBufferHandle
    planning = tail.used
    zero_points = iter(m.zero_points or [1] * (m.inputs + m.outputs))
    for count in (m.inputs, m.outputs):  # the interpreter's input and output TfLiteTensors
        tail.take(4 * count, ALIGN)
        for _ in range(count):
            tail.take(32, 4)  # TfLiteTensor
            tail.take(12, 4)  # TfLiteAffineQuantization
            tail.take(4 + 4 * next(zero_points, 1), 4)  # its zero points, a TfLiteIntArray
    return planning, tail.used, prepare


def rule(rec: Recording | None, m: ModelLayout, scratch_per_op: list[int], bits: int = 32,
         kernels: str = "reference") -> ArenaRule:
    """The arena of the model: on the 64-bit host from the host's recording (its tail as recorded), on a 32-bit core
    from the allocations replayed with the core's struct sizes; the head from TFLM's planner in both."""
    d = STRUCTS[bits]
    requests = sum(len(r) for r in scratch_requests(m, scratch_per_op))
    buffers = with_scratch(m, scratch_per_op)
    head = greedy_head(buffers)
    prepare = 0
    if bits == 64:
        tail = rec.tail
        # the input and output TfLiteTensors with their quantization and the two pointer arrays come after planning
        after = (m.inputs + m.outputs) * (d["tflite_tensor"] + d["affine_quant"] + 8) + 2 * ALIGN
        tail_planning = tail - after
    else:
        tail_planning, tail, prepare = tail_32(m, kernels, scratch_requests(m, scratch_per_op))
    resizable = (requests + MAX_SCRATCH_PER_OP) * d["scratch_request"]
    temp = align(resizable + d["pointer"] + (m.tensors + requests) * d["allocation_info"])
    planning = max(tail_planning + temp + len(buffers) * PLANNER_BYTES_PER_BUFFER, prepare)
    used = tail + head
    return ArenaRule(bits, tail, head, planning, align(max(used, planning)), used)


def to_json(m: ModelLayout) -> dict:
    return asdict(m)


def from_json(data: dict) -> ModelLayout:
    return ModelLayout(data["tensors"], list(data["ops"]), data["inputs"], data["outputs"],
                       [Buffer(**b) for b in data["buffers"]], list(data.get("channels", [])),
                       list(data.get("zero_points", [])), [list(z) for z in data.get("op_zero_points", [])],
                       [list(r) for r in data.get("op_scratch", [])])
