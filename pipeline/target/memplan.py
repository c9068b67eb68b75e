"""An offline memory plan for the arena's non-persistent section, embedded in the model for the unchanged TFLM.

TFLM's runtime planner is greedy. For a model whose operators run in a known order, the tensors alive at each step
are known in advance, and the bytes alive at the busiest step are a lower bound on any plan. This module places
every activation tensor at an offset so that tensors alive at the same time never overlap, tries a few placement
orders and keeps the smallest, and writes the offsets into the model as TFLM's documented offline plan (metadata
"OfflineMemoryAllocation": version, subgraphs, tensor count, then one int32 offset per tensor, -1 where the runtime
plans it; TFLM's docs/memory_management.md). TFLM then places only its scratch buffers around them.
"""
from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.target import graph as graph_mod
from pipeline.errors import PipelineError

METADATA_NAME = "OfflineMemoryAllocation"
ALIGN = 16  # TFLM aligns every tensor in the arena to 16 bytes
ONLINE = -1


def aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Plan:
    offsets: dict[int, int]  # tensor index -> byte offset in the head section
    sizes: dict[int, int]  # tensor index -> aligned bytes
    spans: dict[int, tuple[int, int]]  # tensor index -> (first step, last step)
    head_bytes: int  # the planned non-persistent section
    lower_bound: int  # bytes alive at the busiest step: no plan can be smaller
    strategy: str


def lower_bound(sizes: dict[int, int], spans: dict[int, tuple[int, int]], steps: int) -> int:
    alive = [0] * max(steps, 1)
    for index, (first, last) in spans.items():
        for step in range(first, last + 1):
            alive[step] += sizes[index]
    return max(alive) if alive else 0


def place(order: list[int], sizes: dict[int, int], spans: dict[int, tuple[int, int]]) -> dict[int, int]:
    """First fit in the given order: each tensor at the lowest offset clear of the placed tensors it lives with."""
    offsets: dict[int, int] = {}
    for index in order:
        first, last = spans[index]
        busy = sorted((offsets[o], offsets[o] + sizes[o]) for o in offsets
                      if not (spans[o][1] < first or last < spans[o][0]))
        candidate = 0
        for start, end in busy:
            if candidate + sizes[index] <= start:
                break
            candidate = max(candidate, end)
        offsets[index] = candidate
    return offsets


def place_two_ends(order: list[int], sizes: dict[int, int], spans: dict[int, tuple[int, int]],
                   height: int) -> dict[int, int]:
    """Alternately at the bottom (lowest offset that fits) and at the top (highest that fits under `height`, the
    lower bound): a chain, where each tensor lives with its neighbours, then reaches the bound exactly."""
    offsets: dict[int, int] = {}
    for k, index in enumerate(order):
        first, last = spans[index]
        busy = [(offsets[o], offsets[o] + sizes[o]) for o in offsets
                if not (spans[o][1] < first or last < spans[o][0])]
        size = sizes[index]

        def clear(start):
            return start >= 0 and all(start + size <= a or b <= start for a, b in busy)

        top = [c for c in [height - size] + [a - size for a, _ in busy] if c <= height - size and clear(c)]
        if k % 2 and top:
            offsets[index] = max(top)
        else:
            offsets[index] = min(c for c in [0] + [b for _, b in busy] if clear(c))
    return offsets


STRATEGIES = {
    "largest first": lambda sizes, spans: sorted(sizes, key=lambda i: (-sizes[i], spans[i][0], i)),
    "longest lived first": lambda sizes, spans: sorted(sizes, key=lambda i: (spans[i][0] - spans[i][1], -sizes[i], i)),
    "by first use": lambda sizes, spans: sorted(sizes, key=lambda i: (spans[i][0], -sizes[i], i)),
    "largest area first": lambda sizes, spans: sorted(
        sizes, key=lambda i: (-sizes[i] * (spans[i][1] - spans[i][0] + 1), i)),
}


def plan_tensors(sizes: dict[int, int], spans: dict[int, tuple[int, int]], steps: int) -> Plan:
    bound = lower_bound(sizes, spans, steps)
    candidates = [(name, place(order_of(sizes, spans), sizes, spans)) for name, order_of in STRATEGIES.items()]
    candidates.append(("two ends", place_two_ends(STRATEGIES["by first use"](sizes, spans), sizes, spans, bound)))
    best = None
    for name, offsets in candidates:
        head = max((offsets[i] + sizes[i] for i in offsets), default=0)
        if best is None or head < best.head_bytes:
            best = Plan(offsets, sizes, spans, head, bound, name)
        if head == bound:
            break
    return best


def plan(g: graph_mod.Graph) -> Plan:
    spans = g.lifetimes()
    sizes = {i: aligned(g.tensors[i].bytes) for i in spans}
    return plan_tensors(sizes, spans, len(g.ops))


def overlaps(p: Plan) -> list[tuple[int, int]]:
    """Pairs of tensors alive at the same step whose bytes overlap: empty for a valid plan."""
    found = []
    items = list(p.offsets)
    for a_pos, a in enumerate(items):
        for b in items[a_pos + 1:]:
            live_together = not (p.spans[a][1] < p.spans[b][0] or p.spans[b][1] < p.spans[a][0])
            apart = p.offsets[a] + p.sizes[a] <= p.offsets[b] or p.offsets[b] + p.sizes[b] <= p.offsets[a]
            if live_together and not apart:
                found.append((a, b))
    return found


def embed(model_bytes: bytes, p: Plan, tensor_count: int) -> bytes:
    """The model with the plan in its metadata (any previous plan replaced), re-aligned as TFLM expects."""
    from pipeline.target import tflite_model

    schema = tflite_model._schema()
    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    if len(model.subgraphs) != 1:
        raise PipelineError("the offline memory plan supports single-subgraph models only")
    values = [1, 1, tensor_count] + [p.offsets.get(i, ONLINE) for i in range(tensor_count)]
    buffer = schema.BufferT()
    buffer.data = list(struct.pack(f"<{len(values)}i", *values))
    model.metadata = [m for m in (model.metadata or []) if (m.name or b"").decode() != METADATA_NAME]
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return pack(model, len(model_bytes))


def pack(model, size_hint: int) -> bytes:
    """A model object (the schema's ModelT) back to .tflite bytes, its buffers re-aligned as TFLM expects."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as align

    builder = flatbuffers.Builder(size_hint + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "packed.tflite", Path(tmp) / "aligned.tflite"
        raw.write_bytes(bytes(builder.Output()))
        align.align_tflite_model(str(raw), str(out))  # buffers back on their 16-byte boundaries
        return out.read_bytes()


def planned_offsets(model_bytes: bytes) -> list[int] | None:
    """The offline plan a model carries, or None."""
    from pipeline.target import tflite_model

    model = tflite_model._schema().ModelT.InitFromPackedBuf(model_bytes, 0)
    for m in model.metadata or []:
        if (m.name or b"").decode() == METADATA_NAME:
            data = bytes(model.buffers[m.buffer].data)
            values = struct.unpack(f"<{len(data) // 4}i", data)
            return list(values[3:3 + values[2]])
    return None
