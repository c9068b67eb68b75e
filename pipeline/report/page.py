"""report.html: one self-contained page per build (inline CSS and SVG, no script, no external fetch).

It reads what the build wrote (report.json's content, profile.json, the board's model.tflite) and shows the
verdict, accuracy, the per-layer profile with each layer's options, the arena's tensors packed over the operator
steps as the firmware's plan places them, the fit bars, the pruning/distillation comparison and the findings.
Every string from the user (model, labels, layer and tensor names, paths) goes through html.escape.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from pipeline.cache import write_atomic
from pipeline.report.findings import Finding
from pipeline.target import graph as graph_mod
from pipeline.target import memplan

esc = html.escape
PALETTE = ("#4e79a7", "#59a14f", "#9c755f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#bab0ac", "#86bcb6",
           "#8cd17d", "#a0cbe8", "#d4a6c8")
PEAK = "#e15759"
SCRATCH = "#f28e2b"


def _n(value, unit: str = "") -> str:
    return "–" if value is None else f"{value:,}{unit}"


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


# -- the memory picture -----------------------------------------------------------------------------------
def packing(g: graph_mod.Graph, model_bytes: bytes, plan_report: dict | None) -> dict:
    """Each activation tensor's offset, size and lifetime in the arena's head, as the firmware's plan has it."""
    spans = g.lifetimes()
    sizes = {i: memplan.aligned(g.tensors[i].bytes) for i in spans}
    embedded = memplan.planned_offsets(model_bytes)
    if embedded is not None:
        offsets = {i: embedded[i] for i in spans if i < len(embedded) and embedded[i] >= 0}
        source = ("the offline plan embedded in the model: the firmware's TFLM places the activations at exactly "
                  "these offsets")
    else:
        offsets = memplan.place(memplan.STRATEGIES["largest first"](sizes, spans), sizes, spans)
        source = ("TFLM's greedy planner (largest tensor first, lowest offset that is free for its lifetime), "
                  "reconstructed by mcu-deploy from the operators' order")
        measured = (plan_report or {}).get("tflm_head_bytes")
        if measured is not None:
            head = max((offsets[i] + sizes[i] for i in offsets), default=0)
            source += (f"; TFLM measured its head at {measured:,} B" +
                       (", the same" if measured == head else f", this reconstruction gives {head:,} B"))
    head = max((offsets[i] + sizes[i] for i in offsets), default=0)
    bound = memplan.lower_bound(sizes, spans, len(g.ops))
    alive = [0] * max(len(g.ops), 1)
    for i, (a, b) in spans.items():
        for step in range(a, b + 1):
            alive[step] += sizes[i]
    peak_step = max(range(len(alive)), key=lambda s: alive[s])
    tensors = [{"index": i, "name": g.tensors[i].name.split(";")[0], "shape": list(g.tensors[i].shape),
                "bytes": g.tensors[i].bytes, "size": sizes[i], "offset": offsets.get(i), "first": spans[i][0],
                "last": spans[i][1], "peak": spans[i][0] <= peak_step <= spans[i][1]} for i in sorted(spans)]
    return {"tensors": tensors, "head_bytes": head, "lower_bound_bytes": bound, "peak_step": peak_step,
            "source": source, "steps": len(g.ops)}


def packing_svg(pack: dict, ops: list[str], scratch: list[int]) -> str:
    """Offset (up) over operator steps (across): one rectangle per tensor; the peak's tensors in red, each
    operator's kernel scratch stacked above the head in orange (TFLM places scratch around the activations)."""
    steps = max(pack["steps"], 1)
    top = max(pack["head_bytes"] + max(scratch or [0]), pack["lower_bound_bytes"], 1)
    w, h, left, bottom, right, up = 960, 360, 78, 92, 16, 14
    pw, ph = w - left - right, h - bottom - up

    def x(step):
        return left + pw * step / steps

    def y(offset):
        return up + ph * (1 - offset / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" class="chart" role="img" '
             f'aria-label="arena packing chart">',
             f'<rect x="{left}" y="{up}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>']
    for k in range(5):
        value = top * k / 4
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" class="tick">{value:,.0f}</text>')
    for n, t in enumerate(pack["tensors"]):
        if t["offset"] is None:
            continue
        x0, x1 = x(t["first"]), x(t["last"] + 1)
        y0, y1 = y(t["offset"] + t["size"]), y(t["offset"])
        fill = PEAK if t["peak"] else PALETTE[n % len(PALETTE)]
        label = f"#{t['index']} {t['name']} {'x'.join(map(str, t['shape']))}: {t['bytes']:,} B at offset {t['offset']:,}, steps {t['first']}-{t['last']}"
        parts.append(f'<rect x="{x0 + 1:.1f}" y="{y0:.1f}" width="{max(x1 - x0 - 2, 1):.1f}" height="{max(y1 - y0, 1):.1f}" '
                     f'fill="{fill}" fill-opacity="0.85" stroke="#333" stroke-width="0.6"><title>{esc(label)}</title></rect>')
        if y1 - y0 > 13 and x1 - x0 > 60:
            name = t["name"].split("/")[-2] if t["name"].count("/") >= 2 else t["name"]
            text = f"{name} {t['bytes']:,} B"[: int((x1 - x0) / 6.5)]
            parts.append(f'<text x="{x0 + 5:.1f}" y="{(y0 + y1) / 2 + 4:.1f}" class="in">{esc(text)}</text>')
    for step, s in enumerate(scratch):
        if s:
            parts.append(f'<rect x="{x(step) + 1:.1f}" y="{y(pack["head_bytes"] + s):.1f}" width="{x(step + 1) - x(step) - 2:.1f}" '
                         f'height="{y(pack["head_bytes"]) - y(pack["head_bytes"] + s):.1f}" fill="{SCRATCH}" fill-opacity="0.7">'
                         f'<title>kernel scratch of #{step} {esc(ops[step])}: {s:,} B</title></rect>')
    lines = ([(pack["head_bytes"], "plan = lower bound", "#000")] if pack["head_bytes"] == pack["lower_bound_bytes"]
             else [(pack["lower_bound_bytes"], "lower bound", "#000"), (pack["head_bytes"], "plan", "#555")])
    for value, label, colour in lines:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="{colour}" '
                     f'stroke-dasharray="5 4"/><text x="{left + pw - 4}" y="{y(value) - 4:.1f}" text-anchor="end" '
                     f'class="tick">{label} {value:,} B</text>')
    for step, op in enumerate(ops):
        cx = (x(step) + x(step + 1)) / 2
        parts.append(f'<text transform="translate({cx:.1f},{up + ph + 12}) rotate(35)" class="tick">#{step} {esc(op)}</text>')
    parts.append(f'<text x="14" y="{up + ph / 2}" transform="rotate(-90 14 {up + ph / 2})" text-anchor="middle" '
                 'class="tick">offset in the arena (bytes)</text></svg>')
    return "".join(parts)


# -- pieces of the page -----------------------------------------------------------------------------------
def _bar(segments: list[tuple[str, int, str]], budget: int) -> str:
    scale = max(budget, sum(v for _, v, _ in segments), 1)
    cells = "".join(f'<div class="seg" style="width:{100 * v / scale:.2f}%;background:{c}" title="{esc(n)}: {v:,} B"></div>'
                    for n, v, c in segments if v > 0)
    mark = f'<div class="budget" style="left:{100 * budget / scale:.2f}%"></div>'
    return f'<div class="bar">{cells}{mark}</div>'


def _fit(report: dict) -> str:
    scratch = report.get("arena_kernel_scratch_bytes") or 0
    sample = report["flash_bytes"] - report["tflite_bytes"] - report["runtime_flash_bytes"]
    flash = [("model (.tflite)", report["tflite_bytes"], "#4e79a7"), ("test sample", sample, "#a0cbe8"),
             ("runtime", report["runtime_flash_bytes"], "#bab0ac")]
    # TFLM's need on the board's core (tensors, kernel data and the scratch requests the planner places beside
    # the activations: pipeline.target.mcu_arena); the largest scratch request is shown within it
    arena_rest = report["arena_bytes"] - scratch - report["arena_margin_bytes"]
    ram = [("arena: TFLM's need on the core", arena_rest, "#59a14f"), ("arena: largest kernel scratch", scratch, SCRATCH),
           ("arena: margin", report["arena_margin_bytes"], "#8cd17d"),
           ("input buffer", report["ram_bytes"] - report["arena_bytes"] - report["runtime_ram_bytes"], "#a0cbe8"),
           ("runtime", report["runtime_ram_bytes"], "#bab0ac")]
    rows = []
    for what, used, budget, segments in (("flash", report["flash_bytes"], report["flash_budget_bytes"], flash),
                                         ("RAM", report["ram_bytes"], report["ram_budget_bytes"], ram)):
        legend = " + ".join(f'<span class="key" style="background:{c}"></span>{esc(n)} {v:,}' for n, v, c in segments if v)
        rows.append(f'<tr><th>{what}</th><td>{_bar(segments, budget)}<div class="legend">{legend} = <b>{used:,} B</b> '
                    f'of {budget:,} B ({100 * used / budget:.1f} %, {budget - used:,} B headroom)</div></td></tr>')
    source = esc(report.get("runtime_source") or "estimate")
    return (f'<table class="fit">{"".join(rows)}</table><p class="note">Runtime figures (SDK + TFLM kernels): '
            f'{source}. Arena: TFLM\'s RecordingMicroAllocator on the host, + the {esc(report["kernels"])} kernels\' '
            f'largest scratch request (computed from their size rules), + the kernel family\'s margin.</p>')


def _accuracy(report: dict) -> str:
    if report.get("tflm_metric") is None:
        return '<p class="note">No accuracy: the build had no test data (pass --data).</p>'
    unit = " %" if report["metric"] == "accuracy" else ""
    cells = "".join(f'<div class="kpi"><div class="v">{report[k]:.2f}{unit}</div><div class="l">{label}</div></div>'
                    for k, label in (("float_metric", "float (Keras)"), ("int8_metric", "int8 (TFLite)"),
                                     ("tflm_metric", "int8 on TFLM (host)")) if report.get(k) is not None)
    return (f'<div class="kpis">{cells}</div><p class="note">{esc(report["metric"])} on {_n(report.get("test_examples"))} '
            f'test examples; TFLM vs TFLite largest output difference {report.get("tflm_vs_tflite_max_output_diff")} '
            'int8 steps.</p>')


def _options(op: graph_mod.Op | None) -> str:
    if op is None:
        return ""
    o = op.options
    parts = []
    if "filter_h" in o:
        parts.append(f"pool {o['filter_h']}x{o['filter_w']}")
    if op.weights is not None and op.kind != "FULLY_CONNECTED":
        parts.append("kernel " + "x".join(map(str, op.weights.shape[1:3])))
    if "stride_h" in o:
        parts.append(f"stride {o['stride_h']}x{o['stride_w']}")
    if o.get("dilation_h", 1) != 1 or o.get("dilation_w", 1) != 1:
        parts.append(f"dilation {o['dilation_h']}x{o['dilation_w']}")
    if "padding" in o:
        parts.append(str(o["padding"]).lower())
    if o.get("depth_multiplier", 1) != 1:
        parts.append(f"depth x{o['depth_multiplier']}")
    if o.get("activation") not in (None, "NONE"):
        parts.append(str(o["activation"]).lower())
    return ", ".join(parts)


def _profile(profile: dict, g: graph_mod.Graph | None) -> str:
    rows = profile.get("rows", [])
    errors = any(r.get("quant_rmse_steps") is not None for r in rows)
    head = ["#", "op", "layer", "options", "output", "weights / bias", "params", "MACs", "ops", "live B", "scratch B",
            "est. µs", "share"] + (["int8 error"] if errors else [])
    body = []
    for r in rows:
        op = g.ops[r["index"]] if g and r["index"] < len(g.ops) else None
        layer = graph_mod.layer_name(op.outputs[0].name) if op is not None else None
        consts = ("; ".join("x".join(map(str, t.shape)) for t in op.inputs[1:] if t is not None and t.constant)
                  if op is not None and op.weights is not None else "")
        out_elems = 1
        for d in r["output_shape"]:
            out_elems *= d
        ops_count = 2 * r["macs"] + out_elems  # a multiply and an add per MAC, one more per output element
        cells = [str(r["index"]), esc(r["op"]) + (' <span class="hot">hot</span>' if r.get("hot") else ""),
                 esc(layer or ""), esc(_options(op)), "x".join(map(str, r["output_shape"])), esc(consts),
                 f"{r['params']:,}", f"{r['macs']:,}", f"{ops_count:,}", f"{r['live_bytes']:,}", f"{r['scratch_bytes']:,}",
                 f"{r['est_us']:,.1f}",
                 f'<div class="share"><div style="width:{100 * r["share"]:.1f}%"></div><span>{100 * r["share"]:.1f} %</span></div>']
        if errors:
            cells.append("" if r.get("quant_rmse_steps") is None else f"{r['quant_rmse_steps']:.2f}")
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    t = profile["totals"]
    est_s = t["est_us"] / 1e6 if t.get("est_us") else None
    throughput = (f"{1 / est_s:,.1f} inferences/s, {t['macs'] / est_s / 1e6:,.1f} M MACs/s" if est_s else "–")
    return (f'<div class="scroll"><table class="grid prof"><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody><tfoot><tr><td colspan="6">total: {t["ops"]} operators</td>'
            f'<td>{t["params"]:,}</td><td>{t["macs"]:,}</td><td></td><td>peak {t["peak_live_bytes"]:,}</td>'
            f'<td>max {t["max_scratch_bytes"]:,}</td><td>{t["est_us"]:,.1f}</td><td>100 %</td>'
            f'{"<td></td>" if errors else ""}</tr></tfoot></table></div>'
            f'<p class="note">Throughput (ESTIMATE): {throughput}. Latency per layer: ESTIMATE from the cost model '
            f'<b>{esc(profile["cost_model"])}</b>: {esc(profile["cost_source"])}; cycles per instruction '
            f'{profile.get("cycles_per_instruction", 1):g} ({esc(profile.get("cpi_source", ""))}). '
            'Ops = 2 × MACs + one per output element. int8 error: RMSE of the layer\'s output in int8 steps, float vs '
            'post-training int8 (TFLite\'s quantization debugger).</p>')


def _memory(report: dict, pack: dict, profile: dict, g: graph_mod.Graph) -> str:
    plan = report.get("memory_plan") or {}
    scratch = [r["scratch_bytes"] for r in profile.get("rows", [])]
    peak_tensors = [t for t in pack["tensors"] if t["peak"]]
    peak_list = "".join(f'<li><b>{esc(t["name"])}</b> {"x".join(map(str, t["shape"]))}: {t["bytes"]:,} B, alive '
                        f'#{t["first"]}–#{t["last"]}</li>' for t in sorted(peak_tensors, key=lambda t: -t["bytes"]))
    rows = [("lower bound (bytes alive at the busiest step; no plan can be smaller)", plan.get("lower_bound_bytes")),
            ("TFLM's greedy plan: activations (head)", plan.get("tflm_head_bytes")),
            ("offline plan: activations", plan.get("offline_head_bytes")),
            ("TFLM's plan: whole arena on the host", plan.get("tflm_total_bytes")),
            ("offline plan: whole arena on the host", plan.get("offline_total_bytes"))]
    used = {"offline": "the offline plan (embedded in the model)", "tflm": "TFLM's own plan"}.get(plan.get("used"), "–")
    table = "".join(f"<tr><th>{k}</th><td>{_n(v, ' B')}</td></tr>" for k, v in rows if v is not None)
    scratch_op = report.get("arena_kernel_scratch_op")
    return (f'<div class="two"><div>{packing_svg(pack, [op.kind for op in g.ops], scratch)}'
            f'<p class="note">Offsets from {esc(pack["source"])}. Red: the tensors alive at the peak, step '
            f'#{pack["peak_step"]}. Orange: each operator\'s kernel scratch ({esc(report["kernels"])}), placed by TFLM '
            'around the activations while that operator runs.</p></div>'
            f'<div><table class="kv">{table}<tr><th>the firmware uses</th><td>{used}</td></tr>'
            f'<tr><th>kernel scratch (largest)</th><td>{_n(report.get("arena_kernel_scratch_bytes"), " B")}'
            f'{" for " + esc(scratch_op) if scratch_op else ""}</td></tr>'
            f'<tr><th>arena in the firmware</th><td>{report["arena_bytes"]:,} B</td></tr></table>'
            f'<h3>What sets the peak</h3><ul>{peak_list}</ul></div></div>')


def _comparison(report: dict) -> str:
    out = []
    p = report.get("pruning")
    if p and p.get("kind") == "structured":
        pr, un, s = p["pruned"], p["unpruned"], p["saved_fraction"]
        rows = "".join(f'<tr><th>{label}</th><td>{pr[k]:,}</td><td>{un[k]:,}</td><td>-{100 * s.get(k, 0):.0f} %</td></tr>'
                       for k, label in (("tflite_bytes", "flash (.tflite, B)"), ("arena_bytes", "arena (B)"),
                                        ("macs", "MACs"), ("latency_estimate_us", "latency ESTIMATE (µs)")))
        if pr.get("metric") is not None and un.get("metric") is not None:
            rows += f'<tr><th>{esc(p["metric_name"] or "metric")} (TFLM)</th><td>{pr["metric"]:.2f}</td><td>{un["metric"]:.2f}</td><td></td></tr>'
        out.append(f'<h3>Structured pruning ({100 * p["sparsity"]:.0f} % of channels removed) vs the same model '
                   f'unpruned</h3><table class="grid narrow"><tr><th></th><th>pruned</th><th>unpruned</th><th>saved</th>'
                   f'</tr>{rows}</table>')
    elif p:
        out.append(f'<p class="note">{esc(p.get("note", ""))}</p>')
    d = report.get("distillation")
    if d:
        out.append(f'<h3>Distillation (teacher {esc(str(d["teacher"]))}, T={d["temperature"]:g}, '
                   f'alpha={d["alpha"]:g})</h3><table class="grid narrow"><tr><th></th><th>distilled</th><th>trained '
                   f'alone</th></tr><tr><th>float {esc(d["metric_name"])}</th><td>{d["distilled"]["float"]:.2f}</td>'
                   f'<td>{d["alone"]["float"]:.2f}</td></tr><tr><th>int8 TFLM {esc(d["metric_name"])}</th>'
                   f'<td>{d["distilled"]["tflm"]:.2f}</td><td>{d["alone"]["tflm"]:.2f}</td></tr></table>')
    return "".join(out)


def _findings(findings: list[Finding]) -> str:
    items = "".join(f'<li class="f {f.severity}"><span class="sev">{f.severity}</span> {esc(f.message)}'
                    + (f'<div class="rec">→ {esc(f.recommendation)}</div>' if f.recommendation else "") + "</li>"
                    for f in findings)
    return f'<ul class="findings">{items}</ul>'


def verdict(report: dict, findings: list[Finding]) -> tuple[bool, str]:
    """Fits or not, by how much, on which budget: the tightest of flash and RAM, then any --max-* exceeded."""
    margins = [(what, report[f"{key}_budget_bytes"] - report[f"{key}_bytes"], report[f"{key}_budget_bytes"])
               for what, key in (("flash", "flash"), ("RAM", "ram"))]
    what, room, budget = min(margins, key=lambda m: m[1] / m[2])
    over = [f for f in findings if f.budget and f.severity == "error"]
    if room < 0:
        return False, (f"does NOT fit {report['board']}: {what} is {-room:,} B ({_kib(-room)}) over its "
                       f"{budget:,} B budget")
    text = f"fits {report['board']}: tightest budget {what}, {room:,} B ({100 * room / budget:.0f} %) headroom"
    if over:
        return False, text + "; but " + "; ".join(f.message for f in over)
    return True, text


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f3f4f6;color:#1f2933}
main{max-width:1240px;margin:0 auto;padding:18px 22px 40px}
h1{font-size:22px;margin:6px 0 2px}h2{font-size:17px;margin:0 0 10px}h3{font-size:14px;margin:14px 0 6px}
.sub{color:#52606d;margin-bottom:12px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:14px 18px;margin:14px 0}
.banner{border-radius:8px;padding:14px 18px;font-size:18px;font-weight:600;color:#fff}
.banner.ok{background:#2f855a}.banner.bad{background:#c53030}
.kpis{display:flex;gap:12px;flex-wrap:wrap}.kpi{background:#f7f9fb;border:1px solid #e4e7eb;border-radius:6px;padding:8px 14px;min-width:130px}
.kpi .v{font-size:20px;font-weight:600}.kpi .l{color:#616e7c;font-size:12px}.kpi.est .l::after{content:" · estimate";color:#b7791f}
.note{color:#52606d;font-size:12px;margin:6px 0 0}
table{border-collapse:collapse}.grid{width:100%;font-size:12.5px}.grid.narrow{width:auto}
.grid th,.grid td{border-bottom:1px solid #e4e7eb;padding:4px 7px;text-align:right;white-space:nowrap}
.grid th{background:#f7f9fb}.grid td:nth-child(2),.grid td:nth-child(3),.grid td:nth-child(4),.grid th:nth-child(2),.grid th:nth-child(3),.grid th:nth-child(4){text-align:left}
.scroll{overflow-x:auto}.grid.prof{font-size:12px}.grid.prof th,.grid.prof td{padding:4px 5px}
.grid.prof tbody td:nth-child(4){white-space:normal;min-width:150px}
.grid tfoot td{font-weight:600}
.hot{background:#e15759;color:#fff;border-radius:3px;padding:0 4px;font-size:11px}
.share{position:relative;width:64px;height:16px;background:#edf2f7;border-radius:3px}
.share div{height:100%;background:#9db9dc;border-radius:3px}.share span{position:absolute;left:4px;top:0;font-size:11px}
.fit{width:100%}.fit th{width:60px;text-align:left;vertical-align:top;padding-top:6px}
.bar{position:relative;height:22px;background:#edf2f7;border-radius:4px;display:flex;overflow:visible;margin-top:4px}
.seg{height:100%}.budget{position:absolute;top:-4px;bottom:-4px;border-left:2px dashed #c53030}
.legend{font-size:12px;color:#3e4c59;margin:4px 0 10px}.key{display:inline-block;width:10px;height:10px;margin:0 4px 0 6px;border-radius:2px}
.two{display:grid;grid-template-columns:minmax(0,3fr) minmax(260px,1.3fr);gap:18px}
.chart{width:100%;height:auto}.chart .tick{font-size:11px;fill:#52606d}.chart .in{font-size:11px;fill:#fff}
.kv th{text-align:left;font-weight:normal;color:#52606d;padding:3px 10px 3px 0}.kv td{text-align:right;font-weight:600}
.findings{list-style:none;padding:0;margin:0}.f{border-left:4px solid #999;padding:6px 10px;margin:6px 0;background:#f7f9fb}
.f.error{border-color:#c53030}.f.warning{border-color:#d69e2e}.f.info{border-color:#3182ce}
.sev{display:inline-block;min-width:56px;font-size:11px;text-transform:uppercase;font-weight:700}
.error .sev{color:#c53030}.warning .sev{color:#b7791f}.info .sev{color:#3182ce}.rec{color:#3e4c59;margin-left:60px}
"""


def render(report: dict, profile: dict, g: graph_mod.Graph, pack: dict, findings: list[Finding],
           labels: list[str] | None = None) -> str:
    ok, text = verdict(report, findings)
    est_ms = report["latency_estimate_us"] / 1000 if report.get("latency_estimate_us") is not None else None
    energy = report.get("energy_estimate_uj")
    kpis = [(f"{est_ms:,.3f} ms" if est_ms is not None else "–", "latency per inference", True),
            (f"{energy:,.1f} µJ" if energy is not None else "no power figure", "energy per inference", True),
            (f"{report['arena_bytes']:,} B", "tensor arena", False),
            (f"{report['tflite_bytes']:,} B", "model (.tflite)", False),
            (f"{report.get('macs') or 0:,}", "MACs per inference", False)]
    kpi_html = "".join(f'<div class="kpi{" est" if est else ""}"><div class="v">{v}</div><div class="l">{label}</div></div>'
                       for v, label, est in kpis)
    label_line = (f'<p class="note">Classes: {esc(", ".join(labels))}</p>' if labels else "")
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
    title = f"{report['model']} on {report['board']}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}: mcu-deploy report</title>'
            f'<style>{STYLE}</style></head><body><main>'
            f'<h1>{esc(title)}</h1><div class="sub">{esc(report["kernels"])} kernels · cost model '
            f'{esc(str(report.get("cost_model")))} · model hash {esc(str(report.get("model_hash")))} · '
            f'{len(g.ops)} operators: {esc(", ".join(report.get("ops", [])))}</div>'
            f'<div class="banner {"ok" if ok else "bad"}" id="verdict">{esc(text)}</div>'
            f'<div class="card"><h2>At a glance</h2><div class="kpis">{kpi_html}</div><p class="note">Latency and energy '
            f'are ESTIMATES from the board\'s cost model, not measurements.</p></div>'
            f'<div class="card"><h2>Findings</h2><p class="note">errors {counts["error"]} · warnings {counts["warning"]} · '
            f'notes {counts["info"]} (also in findings.json, for CI)</p>{_findings(findings)}</div>'
            f'<div class="card"><h2>Accuracy</h2>{_accuracy(report)}{label_line}</div>'
            f'<div class="card"><h2>Fit on {esc(report["board"])}</h2>{_fit(report)}</div>'
            f'<div class="card"><h2>Memory: the arena\'s tensors over the operator steps</h2>'
            f'{_memory(report, pack, profile, g)}</div>'
            f'<div class="card"><h2>Per-layer profile</h2>{_profile(profile, g)}</div>'
            + (f'<div class="card"><h2>Pruning and distillation</h2>{_comparison(report)}</div>'
               if report.get("pruning") or report.get("distillation") else "")
            + '</main></body></html>')


def write(board_dir: Path, report: dict, findings: list[Finding], labels: list[str] | None = None) -> Path:
    """report.html next to report.json, written atomically, from the build's profile.json and model.tflite."""
    profile = json.loads((board_dir / "profile.json").read_text())
    model_path = board_dir / "model.tflite"
    g = graph_mod.read(model_path)
    pack = packing(g, model_path.read_bytes(), report.get("memory_plan"))
    path = board_dir / "report.html"
    write_atomic(path, render(report, profile, g, pack, findings, labels))
    return path
