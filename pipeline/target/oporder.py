"""The order TFLM runs a model's operators in, chosen for the lowest activation peak.

TFLM runs operators in the order the flatbuffer lists them. A chain has one order; a graph with branches (residual
blocks, inception-like branches, a user's multi-input model) has many, and they keep different tensors alive at
once: running a long branch to its end before starting the other one can hold fewer bytes than interleaving them.
The outputs do not depend on the order (every operator reads the same inputs whatever runs around it), so any
topological order gives bit-identical results; the build checks that on the host anyway.

`best_order` searches the topological orders (a beam search over the set of operators run so far, keeping for each
set the order with the lowest peak so far) for the one with the lowest peak of bytes alive (the lower bound of any
memory plan, pipeline.target.memplan), breaking ties by TFLM's greedy plan of that order (pipeline.target.mcu_arena);
`reorder` writes the model with its operators in that order.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.target import graph as graph_mod

BEAM = 256  # orders kept per step: exact for the small branching graphs MCU models have, bounded for big ones


@dataclass
class OrderResult:
    order: list[int]  # op indices of the original model in their new running order
    peak_bytes: int  # bytes alive at the busiest step in this order
    original_peak_bytes: int

    @property
    def changed(self) -> bool:
        return self.order != sorted(self.order)


def _structure(g: graph_mod.Graph):
    """Per op: the activation tensors it reads and writes; per tensor: its bytes and how many ops read it."""
    produced_by = {t.index: op.index for op in g.ops for t in op.outputs}
    reads = [[t.index for t in op.activation_in] for op in g.ops]
    writes = [[t.index for t in op.outputs] for op in g.ops]
    deps = [{produced_by[t] for t in r if t in produced_by} for r in reads]
    readers: dict[int, int] = {}
    for r in reads:
        for t in set(r):
            readers[t] = readers.get(t, 0) + 1
    size = {t.index: t.bytes for t in g.tensors}
    return reads, writes, deps, readers, size


def peak(g: graph_mod.Graph, order: list[int]) -> int:
    """Bytes alive at the busiest step when the ops run in `order`: the model's inputs from the start, its outputs
    to the end, every other activation from the op that writes it to its last reader (as graph.lifetimes)."""
    reads, writes, _, readers, size = _structure(g)
    outputs = {t.index for t in g.outputs}
    alive = {t.index for t in g.inputs}
    left = dict(readers)
    current = sum(size[t] for t in alive)
    worst = current
    for op in order:
        for t in writes[op]:
            if t not in alive:
                alive.add(t)
                current += size[t]
        worst = max(worst, current)
        for t in set(reads[op]):
            left[t] -= 1
            if left[t] == 0 and t not in outputs and t in alive:
                alive.discard(t)
                current -= size[t]
    return worst


def best_order(g: graph_mod.Graph, beam: int = BEAM) -> OrderResult:
    """The topological order with the lowest peak found (the file's own order when nothing is lower)."""
    reads, writes, deps, readers, size = _structure(g)
    outputs = {t.index for t in g.outputs}
    n = len(g.ops)
    original = list(range(n))
    original_peak = peak(g, original)
    # A state: (peak so far, bytes alive now, ops run (bitmask), order, alive tensors, readers left)
    start_alive = frozenset(t.index for t in g.inputs)
    states = [(sum(size[t] for t in start_alive), sum(size[t] for t in start_alive), 0, [], start_alive,
               dict(readers))]
    for _ in range(n):
        best: dict[int, tuple] = {}
        for worst, current, done, order, alive, left in states:
            for op in range(n):
                if done >> op & 1 or any(not (done >> d & 1) for d in deps[op]):
                    continue
                new_alive, new_current = set(alive), current
                for t in writes[op]:
                    if t not in new_alive:
                        new_alive.add(t)
                        new_current += size[t]
                new_worst = max(worst, new_current)
                new_left = dict(left)
                for t in set(reads[op]):
                    new_left[t] -= 1
                    if new_left[t] == 0 and t not in outputs and t in new_alive:
                        new_alive.discard(t)
                        new_current -= size[t]
                mask = done | 1 << op
                key = (new_worst, new_current, order + [op] != original[:len(order) + 1])
                if mask not in best or key < best[mask][0]:
                    best[mask] = (key, (new_worst, new_current, mask, order + [op], frozenset(new_alive), new_left))
        states = [s for _, s in sorted(best.values(), key=lambda item: item[0])[:beam]]
    found = min(states, key=lambda s: (s[0], s[3] != original))
    if found[0] >= original_peak:
        return OrderResult(original, original_peak, original_peak)
    return OrderResult(found[3], found[0], original_peak)


def reorder(model_bytes: bytes, order: list[int]) -> bytes:
    """The model with its first subgraph's operators in `order` (indices into the file's list)."""
    from pipeline.target import memplan, tflite_model

    schema = tflite_model._schema()
    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    ops = model.subgraphs[0].operators
    if sorted(order) != list(range(len(ops))):
        raise ValueError("an operator order must name every operator once")
    model.subgraphs[0].operators = [ops[i] for i in order]
    return memplan.pack(model, len(model_bytes))


def best_order_of(model_bytes: bytes) -> OrderResult:
    return best_order(graph_mod.from_bytes(model_bytes))
