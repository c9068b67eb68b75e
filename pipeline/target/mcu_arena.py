"""The tensor arena TFLM needs on a 32-bit MCU, computed on the host from the 64-bit recording.

The host's RecordingMicroAllocator (pip tflite_micro, 64-bit, reference kernels) reports its persistent
allocations by kind. TFLM's structs hold pointers and size_t, so on a 32-bit MCU each kind is smaller: the rule
replaces every struct's 64-bit size by its 32-bit one (sizes read from TFLM 90b983c compiled by g++ for x86-64
and by arm-none-eabi-g++ 12.2 for Cortex-M). The non-persistent head is TFLM's GreedyMemoryPlanner, replayed here
exactly (same order, same gaps), with the board kernels' scratch requests as buffers alive for their operator,
placed around the offline-planned tensors where the model carries a plan.

The arena must hold the peak of two moments of AllocateTensors, not only what `arena_used_bytes()` reports after
it (the final tail + head):
- memory planning: the tail so far, the scratch requests' resizable buffer, one AllocationInfo per tensor and
  scratch buffer, and the planner's own 40 bytes per planned buffer, all at once in the head;
- the end: the whole tail plus the planned head.
A small model with many tensors (the anomaly-detection autoencoder: 31 tensors, 10 ops) peaks at planning, which is
why its host recording (3,984 bytes) does not run in 3,984 bytes: the same rule with the 64-bit sizes gives the
host's real minimum without searching it.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

ALIGN = 16  # MicroArenaBufferAlignment()
MAX_SCRATCH_PER_OP = 12  # kMaxScratchBuffersPerOp: the resizable buffer keeps room for the next op's requests
PLANNER_BYTES_PER_BUFFER = 40  # GreedyMemoryPlanner::per_buffer_size(): ints only, the same on 32 and 64 bits

# sizeof on each side (TF_LITE_STATIC_MEMORY): x86-64 g++ (the host runtime) and arm-none-eabi-g++ (Cortex-M).
STRUCTS = {
    64: {"eval_tensor": 24, "tflite_tensor": 64, "affine_quant": 24, "node_and_reg": 64, "allocation_info": 32,
         "scratch_request": 16, "scratch_handle": 8, "pointer": 8,
         # the allocator's own objects in the tail: the host's Python interpreter uses the recording ones
         "allocator": 248 + 104, "planner": 72, "builtin_allocator": 16, "subgraph_allocations": 16},
    32: {"eval_tensor": 12, "tflite_tensor": 32, "affine_quant": 12, "node_and_reg": 32, "allocation_info": 24,
         "scratch_request": 12, "scratch_handle": 4, "pointer": 4,
         "allocator": 36 + 36, "planner": 44, "builtin_allocator": 8, "subgraph_allocations": 8},
}

# Kernel op data (the user data each kernel allocates in Init, 16-byte aligned in the arena): sizeof of the 64-bit
# reference kernel's struct and of the 32-bit one of each kernel family, per operator (TFLM 90b983c, CMSIS-NN
# 4ab83cc). Operators missing here keep the host's bytes.
OP_DATA = {
    # kind: (64-bit reference, 32-bit reference, 32-bit cmsis-nn)
    "CONV_2D": (72, 56, 60),
    "DEPTHWISE_CONV_2D": (72, 56, 60),
    "FULLY_CONNECTED": (64, 48, 56),
}

_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_HEAD = re.compile(r"Arena allocation head (\d+) bytes")
_TAIL = re.compile(r"Arena allocation tail (\d+) bytes")
_KIND = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) ")


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
    return ModelLayout(len(g.tensors), [op.kind for op in g.ops], len(g.inputs), len(g.outputs), buffers)


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


def with_scratch(m: ModelLayout, scratch_per_op: list[int]) -> list[Buffer]:
    """The model's buffers and one scratch buffer per op that requests one, alive for that op only."""
    return list(m.buffers) + [Buffer(s, op + 1, op + 1) for op, s in enumerate(scratch_per_op) if s > 0]


@dataclass
class ArenaRule:
    """The arena of one model on one side (64-bit host or 32-bit MCU), with what makes it."""
    bits: int
    tail_bytes: int  # persistent: structs, kernel data, the allocator itself
    head_bytes: int  # the planned activations and scratch
    planning_bytes: int  # the peak while AllocateTensors plans the head
    need_bytes: int  # max(tail + head, planning), a multiple of 16
    used_bytes: int  # what arena_used_bytes() reports after AllocateTensors: tail + head


def tail_bytes(rec: Recording, m: ModelLayout, bits: int, kernels: str, scratch_requests: int) -> int:
    """The persistent section on a `bits`-bit core, kind by kind from the host recording."""
    h, d = STRUCTS[64], STRUCTS[bits]
    recorded = sum(v[0] for v in rec.kinds.values())
    # What the recording does not itemise: the allocator's objects, the subgraph table, the builtin-data
    # allocator, the input/output pointer arrays (16-byte aligned each) and the operators' builtin parameters.
    known_fixed = h["allocator"] + h["planner"] + h["builtin_allocator"] + h["subgraph_allocations"] + 2 * ALIGN
    builtin = rec.tail - recorded - known_fixed
    fixed = (d["allocator"] + d["planner"] + d["builtin_allocator"] + d["subgraph_allocations"] + 2 * ALIGN
             + max(builtin, 0))
    eval_tensors = align(m.tensors * d["eval_tensor"], 4)
    nodes = len(m.ops) * d["node_and_reg"]
    n_tensors = rec.count("Persistent TfLiteTensor data")
    tensors = n_tensors * d["tflite_tensor"]
    quant = rec.used("Persistent TfLiteTensor quantization data") - (n_tensors if n_tensors else 0) * (
        h["affine_quant"] - d["affine_quant"])
    column = {"reference": 1, "cmsis-nn": 2}.get(kernels, 1)
    op_data = rec.used("Persistent buffer data")
    if bits != 64 or kernels != "reference":
        for kind in m.ops:
            sizes = OP_DATA.get(kind)
            if sizes:
                op_data += align(sizes[column]) - align(sizes[0])
    handles = align(scratch_requests * d["scratch_handle"]) if scratch_requests else 0
    variables = rec.used("TfLiteTensor variable buffer data")
    return fixed + eval_tensors + nodes + tensors + quant + op_data + handles + variables


def rule(rec: Recording, m: ModelLayout, scratch_per_op: list[int], bits: int = 32,
         kernels: str = "reference") -> ArenaRule:
    d = STRUCTS[bits]
    requests = sum(1 for s in scratch_per_op if s > 0)
    buffers = with_scratch(m, scratch_per_op)
    head = greedy_head(buffers)
    tail = tail_bytes(rec, m, bits, kernels, requests)
    # At planning the tail lacks what AllocateTensors adds after it: the input and output TfLiteTensors with their
    # quantization, and the two pointer arrays.
    after = (m.inputs + m.outputs) * (d["tflite_tensor"] + d["affine_quant"] + 8) + 2 * ALIGN
    resizable = (requests + MAX_SCRATCH_PER_OP) * d["scratch_request"]
    temp = align(resizable + d["pointer"] + (m.tensors + requests) * d["allocation_info"])
    planning = tail - after + temp + len(buffers) * PLANNER_BYTES_PER_BUFFER
    used = tail + head
    return ArenaRule(bits, tail, head, planning, align(max(used, planning)), used)


def to_json(m: ModelLayout) -> dict:
    return asdict(m)


def from_json(data: dict) -> ModelLayout:
    return ModelLayout(data["tensors"], list(data["ops"]), data["inputs"], data["outputs"],
                       [Buffer(**b) for b in data["buffers"]])
