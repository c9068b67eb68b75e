"""Per-layer profile: where a model's cost is on a board.

One row per operator in execution order: its output shape, parameters, weight bytes, MACs, activation bytes in
and out, the bytes alive in the arena while it runs (and which tensors), the kernel scratch it asks for, and its
ESTIMATED cycles and microseconds on the board (pipeline.target.costmodel), with its share of the total. Written as
profile.json, profile.csv, profile.md and profile.png. Measured per-layer times (`invoke measure --profile`) are
added beside the estimates, labelled by where they came from.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.target import costmodel, kernels
from pipeline.boards import Board
from pipeline.cache import write_atomic
from pipeline.target.graph import Graph

HOT_SHARE = 0.15  # an operator taking at least this share of the estimated latency is a hot spot
TOP = 3
FILES = ("profile.json", "profile.csv", "profile.md", "profile.png")


@dataclass
class Row:
    index: int
    op: str
    output_shape: list[int]
    params: int
    weight_bytes: int
    macs: int
    activation_in_bytes: int
    activation_out_bytes: int
    live_bytes: int
    live_tensors: list[str]
    scratch_bytes: int
    est_cycles: float
    est_us: float
    share: float
    hot: bool = False
    # int8 error of this layer's output against float (quantization debugger): RMSE in int8 steps of the output
    quant_rmse_steps: float | None = None
    measured_us: float | None = None
    measured_source: str | None = None
    cost_rule: str = ""  # the cost model's rule that estimated this op (its code path, e.g. DEPTHWISE_CONV_2D_OPT)
    # where the op kind has no rule of its own in the cost model: which rule estimated it (never silently zero)
    cost_note: str = ""


@dataclass
class Profile:
    model: str
    board: str
    clock_mhz: int
    kernels: str
    cost_model: str
    cost_source: str
    rows: list[Row]
    totals: dict
    top_latency: list[dict]  # the TOP operators by estimated latency
    peak: dict  # the step with the most bytes alive, and the tensors that set it
    ram_budget_bytes: int
    cycles_per_instruction: float = 1.0
    cpi_source: str = ""
    label: str = "estimate"
    measured: dict = field(default_factory=dict)
    cpi_low: float = 1.0
    cpi_high: float = 1.0
    # The audio front end's cost per one-second window, its own row (an ESTIMATE), for a model fed by audio.
    frontend: dict | None = None


def _short(name: str) -> str:
    """A tensor name as a person reads it: TFLite joins fused names with ';', the first part is the layer."""
    return name.split(";")[0][-48:]


def frontend_row(settings: dict, board: Board, cpi: float, model_us: float) -> dict:
    """The front end's ESTIMATED cost on the board's core: its operation count (pipeline.target.frontend) x the
    core's cycles per instruction, at the board's clock."""
    from pipeline.target import frontend

    work = frontend.estimated_cycles(frontend.FrontEndSettings.from_dict(settings))
    cycles = work["ops"] * cpi
    us = cycles / board.clock_mhz
    return {"op": "AUDIO_FRONTEND", "frames": work["frames"], "est_cycles": round(cycles),
            "est_us": round(us, 1), "est_us_per_frame": round(us / work["frames"], 2),
            "share_with_model": round(us / (us + model_us), 4) if us + model_us else None,
            "label": "estimate",
            "source": (f"estimate: ~{work['ops_per_frame']} instructions per {settings['stride_ms']} ms frame "
                       f"({work['fft_size']}-point FFT, window, {settings['mel_channels']}-channel filterbank"
                       f"{', noise reduction' if settings['noise_reduction'] else ''}{', PCAN' if settings['pcan'] else ''}"
                       f"{', log' if settings['log_scale'] else ''}) (76,100 at the defaults: QEMU instruction count of TFLM's microfrontend on a Cortex-M4F, scaled by the settings) x {cpi:g} cycles per instruction at {board.clock_mhz} MHz, for a "
                       f"{settings['clip_samples'] / settings['sample_rate']:g} s window; not measured")}


def build(graph: Graph, board: Board, model_name: str, layer_errors: dict | None = None,
          frontend: dict | None = None) -> Profile:
    cost = costmodel.for_board(board)
    est = costmodel.estimate(graph, board, cost)
    scratch = kernels.scratch(graph, board)
    live = graph.live_bytes()
    total_us = est.latency_us or 1.0
    rows = []
    for op, e in zip(graph.ops, est.per_op):
        alive = graph.live_at(op.index)
        rows.append(Row(op.index, op.kind, list(op.outputs[0].shape), op.params, op.weight_bytes, op.macs,
                        sum(t.bytes for t in op.activation_in), sum(t.bytes for t in op.outputs), live[op.index],
                        [_short(t.name) for t in alive], scratch.per_op[op.index], round(e.cycles),
                        round(e.us, 2), round(e.us / total_us, 4), cost_rule=e.cost_class, cost_note=e.note))
    if layer_errors:
        from pipeline.target.graph import layer_name

        for row, op in zip(rows, graph.ops):
            out = op.outputs[0]
            error = layer_errors.get(layer_name(out.name) or "")
            if error is not None and out.scale:
                row.quant_rmse_steps = round(error["rmse"] / out.scale, 3)
    ranked = sorted(rows, key=lambda r: r.est_us, reverse=True)
    for r in ranked[:TOP]:
        r.hot = r.share >= HOT_SHARE or r is ranked[0]
    peak_step = max(range(len(rows)), key=lambda i: live[i]) if rows else 0
    peak_tensors = sorted(graph.live_at(peak_step), key=lambda t: t.bytes, reverse=True)
    peak = {"step": peak_step, "op": rows[peak_step].op if rows else None, "live_bytes": live[peak_step] if rows else 0,
            "tensors": [{"name": _short(t.name), "shape": list(t.shape), "bytes": t.bytes} for t in peak_tensors]}
    totals = {"ops": len(rows), "params": sum(r.params for r in rows), "weight_bytes": sum(r.weight_bytes for r in rows),
              "macs": sum(r.macs for r in rows), "est_cycles": round(sum(r.est_cycles for r in rows)),
              "est_us": round(est.latency_us, 1), "est_us_low": round(est.latency_low_us, 1),
              "est_us_high": round(est.latency_high_us, 1), "est_energy_uj": None if est.energy_uj is None else round(est.energy_uj, 2),
              "peak_live_bytes": peak["live_bytes"], "max_scratch_bytes": scratch.max_bytes}
    top = [{"index": r.index, "op": r.op, "est_us": r.est_us, "share": r.share} for r in ranked[:TOP]]
    source = cost.source
    if graph.inputs and graph.inputs[0].dtype == "INT16":
        source += " (int8 coefficients applied to an int16x8 model: not calibrated for the int16 kernels)"
    result = Profile(model_name, board.name, board.clock_mhz, board.kernels, cost.name, source, rows, totals, top,
                     peak, board.ram_bytes - board.runtime_ram_bytes, est.cycles_per_instruction, est.cpi_source,
                     cpi_low=est.cpi_low, cpi_high=est.cpi_high)
    if frontend:
        result.frontend = frontend_row(frontend, board, est.cycles_per_instruction, est.latency_us)
    return result


QEMU = "QEMU instruction count"


def add_measured(profile: Profile, measured: list[tuple[str, int]], source: str) -> None:
    """Put measured per-operator microseconds (xprofile) beside the estimates; `source` says where they came from.
    QEMU's microseconds count thousands of instructions: they are put on the board's terms (x cycles per
    instruction / clock), and the label says so."""
    if len(measured) != len(profile.rows):
        raise ValueError(f"the device timed {len(measured)} operators, the model has {len(profile.rows)}")
    scale = 1.0
    if source == QEMU:
        scale = 1000.0 * profile.cycles_per_instruction / profile.clock_mhz
        source = f"{QEMU} x {profile.cycles_per_instruction:g} CPI at {profile.clock_mhz} MHz"
    for row, (name, us) in zip(profile.rows, measured):
        row.measured_us = round(float(us) * scale, 2)
        row.measured_source = source
    profile.measured = {"source": source, "total_us": round(float(sum(us for _, us in measured)) * scale, 2)}


def _fmt_shape(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape)


def to_markdown(p: Profile) -> str:
    measured = any(r.measured_us is not None for r in p.rows)
    lines = [f"# Per-layer profile: {p.model} on {p.board} ({p.clock_mhz} MHz, {p.kernels} kernels)", "",
             f"Latency and energy are ESTIMATES from the cost model `{p.cost_model}`: {p.cost_source}.",
             f"Cycles per instruction: {cpi_text(p.cycles_per_instruction, p.cpi_low, p.cpi_high)} "
             f"({p.cpi_source}).", ""]
    head = ["#", "op", "output", "params", "weight B", "MACs", "act in B", "act out B", "live B", "scratch B",
            "est. cycles", "est. us", "share"]
    errors = any(r.quant_rmse_steps is not None for r in p.rows)
    if errors:
        head.append("int8 error (RMSE, steps)")
    if measured:
        head.append(f"measured us ({p.measured['source']})")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    if p.frontend:
        f = p.frontend
        cells = ["front end", f"{f['op']} (estimate)", f"{f['frames']} frames"] + [""] * 7 + [
            f"{f['est_cycles']}", f"{f['est_us']:.1f}", "not in total"]
        lines.append("| " + " | ".join(cells + [""] * (len(head) - len(cells))) + " |")
    for r in p.rows:
        cells = [str(r.index), r.op + (" **hot**" if r.hot else ""), _fmt_shape(r.output_shape), str(r.params),
                 str(r.weight_bytes), str(r.macs), str(r.activation_in_bytes), str(r.activation_out_bytes),
                 str(r.live_bytes), str(r.scratch_bytes), f"{r.est_cycles:.0f}", f"{r.est_us:.1f}",
                 f"{100 * r.share:.1f}%"]
        if errors:
            cells.append("" if r.quant_rmse_steps is None else f"{r.quant_rmse_steps:.2f}")
        if measured:
            cells.append("" if r.measured_us is None else f"{r.measured_us:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    t = p.totals
    total = ["**total**", f"{t['ops']} ops", "", str(t["params"]), str(t["weight_bytes"]), str(t["macs"]), "", "",
             f"peak {t['peak_live_bytes']}", f"max {t['max_scratch_bytes']}", str(t["est_cycles"]),
             f"{t['est_us']:.1f}", "100%"]
    if errors:
        total.append("")
    if measured:
        total.append(f"{p.measured['total_us']:.0f}")
    lines.append("| " + " | ".join(total) + " |")
    noted = [r for r in p.rows if r.cost_note]
    if noted:
        lines += ["", "Operators without a rule of their own in the cost model (ESTIMATED by the nearest rule): "
                  + "; ".join(f"#{r.index} {r.op}: {r.cost_note}" for r in noted) + "."]
    if errors:
        lines += ["", "int8 error: each layer's output, post-training int8 against float on held-back inputs (TFLite's "
                  "quantization debugger), RMSE in int8 steps of that output: the larger, the more sensitive."]
    if p.frontend:
        lines += ["", f"Front end (its own row, not in the model's total): {p.frontend['source']}; "
                  f"{100 * p.frontend['share_with_model']:.1f}% of front end + one inference."]
    lines += ["", summary(p.totals["est_us"], p.totals["est_energy_uj"], p.cost_model, p.top_latency, p.peak,
                          latency_range(p.totals), cpi_line(asdict(p)))]
    return "\n".join(lines) + "\n"


def cpi_text(cpi: float, low: float, high: float) -> str:
    return f"{cpi:g}" if low == high else f"{cpi:g} ({low:g}-{high:g})"


def latency_range(totals: dict) -> tuple[float, float] | None:
    """The estimate's low-high range in microseconds, where the CPI (or the cost model) is uncertain."""
    low, high = totals.get("est_us_low"), totals.get("est_us_high")
    return None if low is None or high is None or low == high else (low, high)


def cpi_line(p: dict) -> str:
    """The CPI and its source, for the build summary (from a profile or a report)."""
    return (f"  CPI: {cpi_text(p['cycles_per_instruction'], p['cpi_low'], p['cpi_high'])} at {p['clock_mhz']} MHz: "
            f"{p['cpi_source']}")


def summary(est_us: float, energy_uj: float | None, cost_model: str, top: list[dict], peak: dict,
            span: tuple[float, float] | None = None, cpi: str | None = None) -> str:
    """The build summary's lines: the estimate (with its range) and the top layers by latency, the CPI and its
    source, and what sets the peak arena."""
    cost = f"{est_us / 1000:.3f} ms" + (f" ({span[0] / 1000:.3f}-{span[1] / 1000:.3f})" if span else "") + (
        f", {energy_uj:.1f} uJ" if energy_uj is not None else "")
    layers = ", ".join(f"#{t['index']} {t['op']} {100 * t['share']:.0f}%" for t in top)
    pair = " + ".join(f"{t['name']} {_fmt_shape(t['shape'])} ({t['bytes']} B)" for t in peak["tensors"][:2])
    return (f"  latency: {cost} per inference (ESTIMATE, cost model {cost_model}); top layers: {layers}\n"
            + (cpi + "\n" if cpi else "")
            + f"  peak activations: {peak['live_bytes']} bytes at #{peak['step']} {peak['op']}: {pair}")


def to_csv(p: Profile) -> str:
    out = io.StringIO()
    names = [f for f in Row.__dataclass_fields__]
    writer = csv.DictWriter(out, fieldnames=names)
    writer.writeheader()
    for r in p.rows:
        row = asdict(r)
        row["output_shape"] = _fmt_shape(r.output_shape)
        row["live_tensors"] = " ".join(r.live_tensors)
        writer.writerow(row)
    if p.frontend:  # its own row, labelled an estimate
        writer.writerow({"index": "frontend", "op": f"{p.frontend['op']} (estimate)", "output_shape": "",
                         "est_cycles": p.frontend["est_cycles"], "est_us": p.frontend["est_us"]})
    return out.getvalue()


def plot(p: Profile, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.index} {r.op}" for r in p.rows]
    x = range(len(p.rows))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 0.45 * len(labels) + 3), 8), sharex=True)
    colors = ["tab:red" if r.hot else "tab:blue" for r in p.rows]
    top.bar(x, [100 * r.share for r in p.rows], color=colors, label="estimate")
    if any(r.measured_us is not None for r in p.rows):
        total = p.measured["total_us"] or 1.0
        top.plot(x, [100 * (r.measured_us or 0) / total for r in p.rows], "ko", label=f"measured ({p.measured['source']})")
    top.set_ylabel("share of latency (%)")
    top.set_title(f"{p.model} on {p.board}: latency {p.totals['est_us'] / 1000:.3f} ms (ESTIMATE, {p.cost_model})\n"
                  "hot spots in red", fontsize=10)
    top.legend(loc="upper right")
    bottom.bar(x, [r.live_bytes / 1024 for r in p.rows], color="tab:green", label="activations alive")
    bottom.bar(x, [r.scratch_bytes / 1024 for r in p.rows], bottom=[r.live_bytes / 1024 for r in p.rows],
               color="tab:orange", label="kernel scratch")
    bottom.axhline(p.ram_budget_bytes / 1024, color="tab:red", linestyle="--",
                   label=f"RAM budget for the arena ({p.ram_budget_bytes / 1024:.0f} KiB)")
    bottom.set_ylabel("KiB")
    bottom.set_yscale("symlog", linthresh=1)
    bottom.legend(loc="upper right")
    bottom.set_xticks(list(x))
    bottom.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    from pipeline.cache import tmp_path

    tmp = tmp_path(path, ".png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def write(p: Profile, out_dir: Path, with_plot: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("profile.json", json.dumps(asdict(p), indent=2)), ("profile.csv", to_csv(p)),
                       ("profile.md", to_markdown(p))):
        write_atomic(out_dir / name, text)
        paths.append(out_dir / name)
    if with_plot:
        plot(p, out_dir / "profile.png")
        paths.append(out_dir / "profile.png")
    return paths
