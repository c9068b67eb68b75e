"""Findings: what a build's numbers mean, each with a severity and a recommendation, and the budget gates for CI.

Read from what a build wrote (report.json, profile.json) and the model's graph. Severities: `error` (a budget or
the board is exceeded), `warning` (worth acting on), `info`. Written as findings.json next to report.json;
`invoke build --fail-on=budget` exits non-zero when a budget finding is an error.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.cache import write_atomic
from pipeline.errors import PipelineError
from pipeline.target.graph import Graph

SEVERITIES = ("error", "warning", "info")
FAIL_ON = ("budget", "warning")  # --fail-on: a budget exceeded, or any finding of severity warning or error
HOT_SHARE = 0.5  # one layer holding at least this share of the latency estimate is worth a warning
UNRULED_SHARE = 0.1  # operators estimated by another kind's rule holding this share of the estimate: a warning
TIGHT = 0.9  # a budget used beyond this fraction leaves little headroom
SENSITIVE_STEPS = 2.0  # int8 RMSE of a layer's output, in int8 steps, beyond which it is worth a warning


@dataclass
class Finding:
    severity: str  # error, warning, info
    code: str  # a stable name for CI: does-not-fit, budget-latency, hot-layer, int8-sensitive ...
    message: str
    recommendation: str
    budget: bool = False  # a budget gate (fit or a --max-* limit): what --fail-on=budget fails on


@dataclass
class Limits:
    """The user's budgets (None: not set); the board's flash and RAM always apply."""
    max_latency_ms: float | None = None
    max_ram_kb: float | None = None
    max_flash_kb: float | None = None
    max_energy_uj: float | None = None

    def check(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and value <= 0:
                raise PipelineError(f"--{name.replace('_', '-')} must be positive (got {value:g})")

    def any(self) -> bool:
        return any(v is not None for v in asdict(self).values())


def check_fail_on(fail_on: str | None) -> None:
    if fail_on is not None and fail_on not in FAIL_ON:
        raise PipelineError(f"--fail-on must be one of {', '.join(FAIL_ON)} (got {fail_on!r})")


def budget_findings(report: dict, limits: Limits) -> list[Finding]:
    """The board's budgets and the user's --max-* limits, one finding each: error when exceeded."""
    out = []
    for what, used, budget in (("flash", report["flash_bytes"], report["flash_budget_bytes"]),
                               ("RAM", report["ram_bytes"], report["ram_budget_bytes"])):
        if used > budget:
            out.append(Finding("error", f"does-not-fit-{what.lower()}",
                               f"{what} {used:,} B exceeds {report['board']}'s budget {budget:,} B by {used - budget:,} B",
                               "use a smaller --width, --prune=structured, or a board with more " + what, True))
        elif used > TIGHT * budget:
            out.append(Finding("warning", f"tight-{what.lower()}",
                               f"{what} {used:,} B uses {100 * used / budget:.0f} % of {report['board']}'s budget "
                               f"({budget - used:,} B left, and the runtime figure is {report.get('runtime_source') or 'an estimate'})",
                               "leave headroom for the application: a smaller --width or --prune=structured", True))
    est_ms = report["latency_estimate_us"] / 1000 if report.get("latency_estimate_us") is not None else None
    energy = report.get("energy_estimate_uj")
    checks = (("latency", "max_latency_ms", est_ms, "ms", "latency estimate"),
              ("ram", "max_ram_kb", report["ram_bytes"] / 1024, "KiB", "RAM"),
              ("flash", "max_flash_kb", report["flash_bytes"] / 1024, "KiB", "flash"),
              ("energy", "max_energy_uj", energy, "uJ", "energy estimate per inference"))
    for code, option, value, unit, words in checks:
        limit = getattr(limits, option)
        if limit is None:
            continue
        option_name = "--" + option.replace("_", "-")
        if value is None:
            out.append(Finding("error", f"budget-{code}", f"{option_name}={limit:g}: no {words} for {report['board']} "
                               "(its board file has no [power] active_mw)", "add the figure to the board file", True))
        elif value > limit:
            out.append(Finding("error", f"budget-{code}", f"{words} {value:,.2f} {unit} exceeds {option_name}={limit:g} "
                               f"by {value - limit:,.2f} {unit} ({100 * (value / limit - 1):.0f} %)",
                               _advice(code), True))
        else:
            out.append(Finding("info", f"budget-{code}", f"{words} {value:,.2f} {unit} within {option_name}={limit:g} "
                               f"({limit - value:,.2f} {unit} to spare)", "", True))
    return out


def _advice(code: str) -> str:
    return {"latency": "--prune=structured or a smaller --width cuts MACs; a board with a faster core or "
                       "optimized kernels cuts cycles (invoke compare)",
            "energy": "fewer MACs (--prune=structured, --width) or a board with less energy per inference "
                      "(invoke compare --sort=energy)",
            "ram": "a smaller --width shrinks the activations; --memory-plan=offline packs them to the bound",
            "flash": "a smaller --width or --prune=structured: magnitude pruning's zeros are still stored"}[code]


def model_findings(report: dict, profile: dict, graph: Graph | None, sparsity: float | None = None) -> list[Finding]:
    """What the numbers say about the model on this board: hot layers, int8 sensitivity, memory, pruning."""
    out = []
    rows = profile.get("rows", [])
    if rows:
        hot = max(rows, key=lambda r: r["est_us"])
        if hot["share"] >= 0.3:
            message = (f"layer #{hot['index']} {hot['op']} holds {100 * hot['share']:.0f} % of the latency estimate "
                       f"({hot['est_us'] / 1000:.3f} ms, {hot['macs']:,} MACs)")
            op = graph.ops[hot["index"]] if graph and hot["index"] < len(graph.ops) else None
            pruned = (report.get("pruning") or {}).get("kind") == "structured"
            if op is not None and op.weights is not None and pruned:
                advice = (f"already {100 * report['pruning']['sparsity']:.0f} % of channels removed: a higher "
                          "--sparsity or a smaller --width, or a faster board (invoke compare --sort=latency)")
            elif op is not None and op.weights is not None:
                s = sparsity if sparsity else 0.5
                # Removing a fraction s of channels shrinks this layer's output channels, and its input channels
                # too unless it reads the model input: MACs scale with (1 - s) per side.
                reads_input = graph.inputs and any(t is not None and t.index == graph.inputs[0].index
                                                   for t in op.inputs)
                kept = (1 - s) if reads_input or op.kind == "DEPTHWISE_CONV_2D" else (1 - s) ** 2
                advice = (f"structured pruning at {s:g} (--prune=structured --sparsity={s:g}) removes ~"
                          f"{100 * (1 - kept):.0f} % of its MACs")
            else:
                advice = "it has no weights to prune: a smaller input or --width shrinks it"
            out.append(Finding("warning" if hot["share"] >= HOT_SHARE else "info", "hot-layer", message, advice))
        noted = [r for r in rows if r.get("cost_note")]
        if noted:
            share = sum(r["share"] for r in noted)
            out.append(Finding("warning" if share >= UNRULED_SHARE else "info", "no-cost-rule",
                               f"{len(noted)} operator(s) have no rule of their own in the cost model, "
                               f"{100 * share:.1f} % of the estimate: "
                               + "; ".join(f"#{r['index']} {r['cost_note']}" for r in noted[:3])
                               + ("; ..." if len(noted) > 3 else ""),
                               "measure the model (invoke measure) or calibrate the cost model on such an op "
                               "(invoke calibrate)"))
        sensitive = [r for r in rows if r.get("quant_rmse_steps") is not None]
        if sensitive:
            worst = max(sensitive, key=lambda r: r["quant_rmse_steps"])
            last = worst["index"] == len(rows) - 1 or all(r["op"] in ("SOFTMAX", "RESHAPE", "LOGISTIC")
                                                           for r in rows[worst["index"] + 1:])
            where = "the output " if last else ""
            out.append(Finding("warning" if worst["quant_rmse_steps"] >= SENSITIVE_STEPS else "info", "int8-sensitive",
                               f"{where}layer #{worst['index']} {worst['op']} is the most int8-sensitive layer: RMSE "
                               f"{worst['quant_rmse_steps']:.2f} int8 steps of its output (TFLite's quantization "
                               "debugger, float vs post-training int8)",
                               "keep QAT on; if accuracy drops, widen this layer or try --precision=int16x8 "
                               "(int16 activations)"))
    drop = None
    if report.get("float_metric") is not None and report.get("tflm_metric") is not None and report["metric"] == "accuracy":
        drop = report["float_metric"] - report["tflm_metric"]
        if drop >= 1.0:
            out.append(Finding("warning", "int8-drop", f"int8 on TFLM loses {drop:.2f} accuracy points against float "
                               f"({report['float_metric']:.2f} -> {report['tflm_metric']:.2f} %)",
                               "QAT (default on) with more --epochs, or a wider model"))
    plan = report.get("memory_plan") or {}
    if plan.get("lower_bound_bytes") and plan.get("tflm_head_bytes", 0) > plan["lower_bound_bytes"]:
        gap = plan["tflm_head_bytes"] - plan["lower_bound_bytes"]
        if plan.get("used") == "offline":
            out.append(Finding("info", "memory-plan", f"the offline plan saves {gap - (plan['offline_head_bytes'] - plan['lower_bound_bytes']):,} B "
                               f"of activations over TFLM's greedy plan ({plan['tflm_head_bytes']:,} B)", ""))
        else:
            out.append(Finding("warning", "memory-plan", f"TFLM's plan holds {gap:,} B of activations above the lower "
                               f"bound {plan['lower_bound_bytes']:,} B", "--memory-plan=offline"))
    peak = profile.get("peak") or {}
    scratch = report.get("arena_kernel_scratch_bytes") or 0
    if peak.get("tensors"):
        names = " + ".join(f"{t['name']} ({t['bytes']:,} B)" for t in peak["tensors"][:2])
        out.append(Finding("info", "peak-memory", f"the activations peak at {peak['live_bytes']:,} B while #{peak['step']} "
                           f"{peak['op']} runs: {names}",
                           "these tensors set the arena: fewer channels in the layers around this step shrink it"))
    if scratch and peak.get("live_bytes") is not None and scratch > peak["live_bytes"]:
        out.append(Finding("warning", "kernel-scratch", f"{report['kernels']} kernel scratch {scratch:,} B for "
                           f"{report.get('arena_kernel_scratch_op')} is larger than all activations at their peak "
                           f"({peak['live_bytes']:,} B)", "fewer input channels to that layer, or other kernels"))
    if graph is not None:
        from pipeline.target import tflm_aborts

        for risk in tflm_aborts.risks(graph):
            reference = report.get("kernels") == risk.kernels
            out.append(Finding("warning" if reference else "info", "tflm-abort-risk",
                               f"{risk.op}: {risk.reason}" + ("" if reference else
                                                               f" (this board uses {report.get('kernels')} kernels; "
                                                               "the host runtime and the emulator use reference ones)"),
                               "split the SOFTMAX rows or check the device's outputs on real inputs (invoke measure)"))
    pruning = report.get("pruning")
    if pruning and pruning.get("kind") == "magnitude":
        out.append(Finding("info", "magnitude-pruning", f"magnitude pruning zeroed {100 * report['sparsity']:.0f} % of "
                           "the weights and saves 0 bytes of flash and 0 cycles: TFLM stores and multiplies the zeros",
                           "--prune=structured removes whole channels"))
    est = report.get("latency_estimate_us")
    if est is not None:
        out.append(Finding("info", "estimate", f"latency {est / 1000:.3f} ms and energy are ESTIMATES from the cost "
                           f"model {report.get('cost_model')}, not measured",
                           f"measure them: invoke hil --board={report['board']} (or invoke measure)"))
    return out


def rank(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def failed(findings: list[Finding], fail_on: str | None) -> list[Finding]:
    """The findings that fail the build under --fail-on."""
    if fail_on == "budget":
        return [f for f in findings if f.budget and f.severity == "error"]
    if fail_on == "warning":
        return [f for f in findings if f.severity in ("error", "warning")]
    return []


def write(path: Path, findings: list[Finding], extra: dict | None = None) -> None:
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    write_atomic(path, json.dumps({"counts": counts, "findings": [asdict(f) for f in findings], **(extra or {})},
                                  indent=2))
