"""Calibrating a cost model (boards/costs/) from per-operator measurements, and checking it.

`invoke calibrate --tflm=PATH` builds the QEMU port with the real TFLM library of the user's TFLM tree (CMSIS-NN
for the Cortex-M4F, the Cortex-M7 and the Cortex-M33 without DSP; reference kernels for ARMv6-M code standing in
for the Cortex-M0+), for each zoo model at
several widths, runs it under `qemu-system-arm -icount shift=0` (one instruction per virtual nanosecond, so the
port's microsecond clock counts thousands of instructions), reads each operator's time with `xprofile`, and
fits the cost model's coefficients per op kind by non-negative least squares on the relative error. The
measurements are kept as data next to the cost model (boards/costs/calibration/), so `invoke bench-costmodel`
re-checks the fit anywhere, without TFLM or QEMU.

Latency only depends on the shapes, not on the trained weights, so the models are trained one epoch on random
data of the right shape.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline import cache
from pipeline.target import costmodel, graph
from pipeline.errors import PipelineError

CALIBRATION_DIR = costmodel.COSTS_DIR / "calibration"
# What is calibrated under QEMU: the cost model, the QEMU CPU, and a board of that core for the generated files.
TARGETS = {
    "cortex-m4f-cmsis-nn": {"cpu": "cortex-m4+fp", "board": "nucleo-l4r5zi"},
    "cortex-m0plus-reference": {"cpu": "cortex-m0plus", "board": "rp2040"},
    "cortex-m7-cmsis-nn": {"cpu": "cortex-m7+fp", "board": "disco-f746ng"},
    "cortex-m33-nodsp-cmsis-nn": {"cpu": "cortex-m33+nodsp", "board": "pico2"},
}
PLAN = {"digits": (0.5, 1.0, 2.0), "ds_cnn": (0.5, 1.0), "mobilenet_v1": (0.5, 1.0), "resnet8": (0.5, 1.0),
        "autoencoder": (0.5, 1.0)}
# Published MLPerf Tiny results on the NUCLEO-L4R5ZI at 120 MHz (5 flash wait states, ART accelerator),
# milliseconds per inference, with the software stack each was built from. The v1.0 microTVM + CMSIS-NN figures are
# what the ART exposure of the CPI rule is fitted to (so the estimate meets them by construction, within the rule's
# range); the reference submission (TF 2.3.1's TFLM + CMSIS-NN of 2020 + Mbed OS, mlcommons/tiny
# benchmark/reference_submissions/*/setup_example.sh) is a different, slower stack than the TFLM this project
# deploys, shown for context only.
MLPERF_L4R5ZI_MS = {"ds_cnn": 181.9, "mobilenet_v1": 600.6, "resnet8": 704.2, "autoencoder": 10.05}
MLPERF_L4R5ZI_MICROTVM_MS = {"ds_cnn": 99.8, "mobilenet_v1": 301.0, "resnet8": 390.0, "autoencoder": 8.6}
MLPERF_L4R5ZI_STACKS = {
    "microtvm": "MLPerf Tiny v1.0, microTVM + CMSIS-NN (the stack the ART exposure is fitted to)",
    "reference": "MLPerf Tiny reference: TF 2.3.1 TFLM + 2020 CMSIS-NN + Mbed OS (an older, slower stack; context)"}
MLPERF_RUN = {"clock_mhz": 120, "flash_wait_cycles": 5}  # the published runs: 120 MHz, 5 wait states (RM0432)


@dataclass
class OpMeasurement:
    model: str
    width: float
    index: int
    op: str
    cost_class: str
    features: dict[str, float]
    instructions: float
    # "grid": the designed single-operator probes the cost model is FIT on; "zoo", "held_out" (probes unlike the
    # zoo) and "mlperf" (MLPerf Tiny's reference models): the CHECK
    group: str = "grid"


def random_dataset(spec, path: Path, examples: int = 64, seed: int = 0) -> Path:
    """Random inputs and labels of the model's shapes: enough to train, convert and time it."""
    rng = np.random.default_rng(seed)
    x = rng.random((examples,) + tuple(spec.input_shape), dtype=np.float32)
    if spec.autoencoder:
        np.savez(path, x_train=x, x_test=x[:16])
    else:
        y = np.arange(examples) % (spec.num_classes or 1)
        np.savez(path, x_train=x, y_train=y, x_test=x[:16], y_test=y[:16])
    return path


def time_operators(image: Path, machine: str, input_bytes: int, timeout: float = 600.0,
                   info: dict | None = None) -> list[tuple[str, int]]:
    """Run the image under QEMU with -icount and read one inference's per-operator times (us = 1000 instructions);
    `info`, where given, receives the firmware's xinfo numbers (arena_used: TFLM's arena_used_bytes())."""
    import serial

    from pipeline.hil.dut import Device
    from pipeline.hil.harness_build import QemuDevice, free_tcp_port

    with QemuDevice(image, free_tcp_port(), machine=machine) as qemu:
        port = None
        deadline = time.monotonic() + 30.0  # QEMU opens its UART's socket late on a loaded host
        while port is None and time.monotonic() < deadline:
            try:
                port = serial.serial_for_url(qemu.url, timeout=0.05)
            except serial.SerialException:
                time.sleep(0.1)
        if port is None:
            raise PipelineError(f"cannot connect to QEMU's UART at {qemu.url}")
        try:
            device = Device(port, qemu.url, timeout=timeout)
            device.drain(limit=5.0)
            device.load(bytes(input_bytes))
            device.infer(1, 1, timeout=timeout)
            timed = device.profile()
            if info is not None:
                for line in device.command("xinfo"):
                    if line.kind == "x_number":
                        info[line.values[0].replace("-", "_")] = int(line.values[1])
            return timed
        finally:
            port.close()


def time_model(tflm: Path, name: str, tflite: Path, work: Path, model: str, width: float | None = None,
               group: str = "grid", arena: dict | None = None) -> list[OpMeasurement]:
    """Generate the board's files for an int8 .tflite, link them with the real TFLM library in the QEMU port of the
    cost model's core, run one inference under -icount and return one row per operator. `arena`, where given,
    receives what the arena facts keep of the run (arena_fact)."""
    from pipeline.build import Options, Pipeline
    from pipeline.hil.harness_build import QEMU_CPUS, build_qemu_tflm

    target = TARGETS[name]
    opts = Options(tflite=Path(tflite), board=target["board"], build_root=work / "build", compile_firmware=False,
                   name=f"{group}-{model}")
    pipeline = Pipeline(opts, log=lambda _: None)
    _, board_dir = pipeline.run_profile()
    image = build_qemu_tflm(board_dir / "generated", tflm, work / f"{group}-{model}.elf", target["cpu"])
    info: dict = {}
    deployed = pipeline.deployed_tflite(board_dir)  # what the firmware holds: operators reordered, a plan embedded
    rows = _rows(image, QEMU_CPUS[target["cpu"]][1], graph.read(deployed), model, width, group, info)
    if arena is not None and info.get("arena_used"):
        arena.update(arena_fact(deployed, target["board"], info["arena_used"], f"{group} model {model}"))
    return rows


def arena_fact(tflite: Path, board: str, arena_used: int, origin: str) -> dict:
    """What boards/facts/arena/ keeps of one run: the device's arena_used_bytes and what the arena rule needs to
    recompute its figure anywhere (pipeline.bench.arena_check): the model's layout and the board kernels' scratch."""
    from pipeline import boards as boards_mod
    from pipeline.target import kernels, mcu_arena

    g = graph.read(tflite)
    return {"origin": origin, "arena_used_bytes": int(arena_used),
            "measured": f"QEMU run, {time.strftime('%Y-%m-%d')} (invoke calibrate)",
            "scratch_per_op": kernels.scratch(g, boards_mod.load_board(board)).per_op,
            "layout": mcu_arena.to_json(mcu_arena.layout(g))}


def _rows(image: Path, machine: str, model_graph, model: str, width: float | None, group: str,
          info: dict | None = None) -> list[OpMeasurement]:
    timed = time_operators(image, machine, model_graph.inputs[0].bytes, info=info)
    if len(timed) != len(model_graph.ops):
        raise PipelineError(f"{model}: QEMU timed {len(timed)} operators, the model has {len(model_graph.ops)}")
    return [OpMeasurement(model, width, op.index, op.kind, costmodel.cost_class(op), costmodel.features(op),
                          us * 1000.0, group) for op, (_, us) in zip(model_graph.ops, timed)]


def measure(tflm: Path, name: str, work: Path, log: Callable[[str], None] = print,
            plan: dict[str, tuple[float, ...]] = PLAN, arena: dict | None = None) -> list[OpMeasurement]:
    """Build, run and time every zoo model of the plan under QEMU (group "zoo"); one row per operator. `arena`, where
    given, receives each width-1.0 model's arena fact by model name."""
    from pipeline.model import zoo
    from pipeline.build import Options, Pipeline
    from pipeline.hil.harness_build import QEMU_CPUS, build_qemu_tflm

    target = TARGETS[name]
    machine = QEMU_CPUS[target["cpu"]][1]
    rows: list[OpMeasurement] = []
    for model, widths in plan.items():
        spec = zoo.get_spec(model)
        data = random_dataset(spec, work / f"{model}.npz")
        for width in widths:
            log(f"calibrate {name}: {model} at width {width} ...")
            opts = Options(model=model, board=target["board"], data=str(data), epochs=1, sparsity=0.0, width=width,
                           build_root=work / "build", compile_firmware=False, max_drop=100.0)
            pipeline = Pipeline(opts, log=lambda _: None)
            pipeline.run_profile()
            generated = work / "build" / target["board"] / model / "generated"
            image = build_qemu_tflm(generated, tflm, work / f"{model}-{width:g}.elf", target["cpu"])
            info: dict = {}
            deployed = pipeline.deployed_tflite(generated.parent)
            found = _rows(image, machine, graph.read(deployed), model, width, "zoo", info)
            rows += found
            if arena is not None and width == 1.0 and info.get("arena_used"):
                arena[model] = arena_fact(deployed, target["board"], info["arena_used"], f"zoo model {model}")
            log(f"  {len(found)} operators, {sum(r.instructions for r in found):.0f} instructions")
    return rows


FIT_TERMS = {"conv": ("fixed", "mac", "out", "taps", "pixel_taps", "im2col"), "dw": ("fixed", "mac", "out", "pixels", "pixel_taps"),
             # arm_depthwise_conv_s8 (multiplier, dilation) loops over input channels inside each position and tap
             "dw_generic": ("fixed", "mac", "out", "in", "pixels", "pixel_taps", "im2col"),
             "mac": ("fixed", "mac", "out", "in", "weights"), "pool": ("fixed", "mac", "out"),
             "elementwise": ("fixed", "out", "in"), "copy": ("fixed", "out")}
# Operators under this many instructions weigh in the fit by their absolute error at this scale, not their relative
# error: the profiler's tick is 1,000 instructions, so a 3,000-instruction op is known to +-17 % only.
FIT_FLOOR = 20000.0
FIT_GROUP = "grid"


def terms_for(klass: str) -> tuple[str, ...]:
    if klass in ("DEPTHWISE_CONV_2D", "DEPTHWISE_CONV_2D_DILATED"):
        return FIT_TERMS["dw_generic"]
    if klass.startswith("DEPTHWISE_CONV_2D"):
        return FIT_TERMS["dw"]
    if klass in ("CONV_2D", "CONV_2D_1XN"):
        return FIT_TERMS["conv"]
    if klass.startswith("CONV_2D_1X1") or klass.startswith("FULLY_CONNECTED"):
        return FIT_TERMS["mac"]
    if klass in ("MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN"):
        return FIT_TERMS["pool"]
    if klass in ("ADD", "MUL", "SOFTMAX", "QUANTIZE", "default"):
        return FIT_TERMS["elementwise"]
    return FIT_TERMS["copy"]


def fit_rows(rows: list[dict]) -> list[dict]:
    """The rows a cost model is fitted on: the designed grid where the measurements have one (older measurement
    files without groups are fitted on all their rows, the zoo)."""
    grid = [r for r in rows if r.get("group", FIT_GROUP) == FIT_GROUP]
    return grid or rows


def fit(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Coefficients per cost class: non-negative least squares on the relative error of each operator (absolute
    below FIT_FLOOR instructions), on the fit rows (fit_rows). `default`, for op kinds without a rule of their own,
    is fitted on every elementwise and data-movement row of the grid."""
    from scipy.optimize import nnls

    by_class: dict[str, list[dict]] = {}
    for row in fit_rows(rows):
        by_class.setdefault(row["cost_class"], []).append(row)
        if not row.get("features", {}).get("mac") and row["op"] not in ("MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN"):
            by_class.setdefault("default", []).append(row)
    coefficients = {}
    for kind, items in sorted(by_class.items()):
        terms = terms_for(kind)
        a = np.array([[r["features"].get(t, 0.0) for t in terms] for r in items], dtype=float)
        b = np.array([r["instructions"] for r in items], dtype=float)
        if kind != "default" and b.max() < FIT_FLOOR:
            # Only operators below FIT_FLOOR measured (a few profiler ticks of 1,000 instructions each): a fit would
            # be rounding noise (one 20-MAC fully connected at 2,000 gave 100 instructions per MAC). No rule: the
            # op takes its chain's or its nearest kind's rule, labelled (costmodel.CostModel.rule).
            continue
        scale = 1.0 / np.maximum(b, FIT_FLOOR)
        solution, _ = nnls(a * scale[:, None], b * scale)
        coefficients[kind] = {t: float(round(v, 4)) for t, v in zip(terms, solution)}
    return coefficients


def write_cost_model(name: str, coefficients: dict, source: str, cpi: float, assumption: str) -> Path:
    meta = TARGETS_META[name]
    lines = [f"# {meta['title']}: an ESTIMATE in instructions, converted to cycles by the one CPI rule.",
             "# Written by `invoke calibrate` from the measurements in calibration/" + name + ".json.", "[meta]",
             f'core = "{meta["core"]}"', f'kernels = "{meta["kernels"]}"', 'unit = "instructions"',
             f"# {assumption}", f"cycles_per_instruction = {cpi}", f"source = {json.dumps(source)}", ""]
    if "default" not in coefficients:
        coefficients = {**coefficients, "default": coefficients.get("RESHAPE", {"fixed": 500.0, "out": 1.0})}
    for kind, coeffs in coefficients.items():
        lines.append(f"[op.{kind}]")
        lines += [f"{term} = {value:g}" for term, value in coeffs.items()]
        lines.append("")
    path = costmodel.COSTS_DIR / f"{name}.toml"
    path.write_text("\n".join(lines))
    return path


TARGETS_META = {
    "cortex-m4f-cmsis-nn": {"title": "Cortex-M4F with TFLM's CMSIS-NN kernels", "core": "cortex-m4f",
                            "kernels": "cmsis-nn"},
    "cortex-m0plus-reference": {"title": "Cortex-M0+ with TFLM's reference kernels", "core": "cortex-m0plus",
                                "kernels": "reference"},
    "cortex-m7-cmsis-nn": {"title": "Cortex-M7 with TFLM's CMSIS-NN kernels (DSP paths)", "core": "cortex-m7",
                           "kernels": "cmsis-nn"},
    "cortex-m33-nodsp-cmsis-nn": {"title": "Cortex-M33 without the DSP extension with TFLM's CMSIS-NN kernels "
                                           "(plain-C paths)", "core": "cortex-m33-nodsp", "kernels": "cmsis-nn"},
}
# Instructions -> cycles: the core's own CPI on zero-wait memory, the first term of the one CPI rule
# (pipeline.target.costmodel.cpi_rule), which adds each board's flash wait cycles x its flash path's exposure.
# Cortex-M4: most data-processing and MAC instructions take 1 cycle, loads 2 (1 when pipelined), taken branches
# 2-4; TFLM's int8 inner loops are load-heavy, so 1.25 is assumed. Cortex-M0+: a 2-stage pipeline, single-cycle
# multiplier, loads and stores 2 cycles, taken branches 2: 1.4 is assumed for the reference kernels' load/compare-
# heavy loops. Cortex-M7: a 6-stage dual-issue superscalar pipeline, so fewer than one cycle per instruction on
# straight-line code (Arm's figures: ~2.14 DMIPS/MHz and 5.01 CoreMark/MHz, vs 1.25 and 3.42 for the Cortex-M4);
# 0.8 is assumed. Cortex-M33: a 3-stage pipeline like the M4's; without the DSP extension CMSIS-NN runs plain C
# loops with one load per int8 operand: 1.25 is assumed. All four are assumptions, not measurements.
CPI = {"cortex-m4f-cmsis-nn": 1.25, "cortex-m0plus-reference": 1.4, "cortex-m7-cmsis-nn": 0.8,
       "cortex-m33-nodsp-cmsis-nn": 1.25}
CPI_NOTE = {
    "cortex-m4f-cmsis-nn": "Cortex-M4 on zero-wait memory: 1 cycle for data processing and MACs, 2 for loads (1 "
                           "pipelined), 2-4 for taken branches; 1.25 assumed for CMSIS-NN's load-heavy int8 loops",
    "cortex-m0plus-reference": "Cortex-M0+ on zero-wait memory: 1 cycle for data processing and multiplies, 2 for "
                               "loads/stores and taken branches; 1.4 assumed for the reference kernels' loops",
    "cortex-m7-cmsis-nn": "Cortex-M7 on zero-wait memory: dual-issue superscalar, 6-stage pipeline (Arm: ~2.14 "
                          "DMIPS/MHz and 5.01 CoreMark/MHz vs the M4's 1.25 and 3.42); 0.8 ASSUMED for CMSIS-NN's "
                          "DSP loops",
    "cortex-m33-nodsp-cmsis-nn": "Cortex-M33 on zero-wait memory: 3-stage pipeline, 1 cycle for data processing and "
                                 "multiplies, 2 for most loads; 1.25 ASSUMED for CMSIS-NN's plain-C (no DSP) loops",
}
CPI_RULE_NOTE = ("instructions x the board's CPI: this core CPI {cpi} + the board's flash wait cycles x its flash "
                 "path's exposure (pipeline.target.costmodel.cpi_rule)")


def measurements_path(name: str) -> Path:
    return CALIBRATION_DIR / f"{name}.json"


def load_measurements(name: str) -> dict:
    path = measurements_path(name)
    if not path.is_file():
        raise PipelineError(f"no calibration measurements for {name} ({path}): run `invoke calibrate --tflm=PATH`")
    return json.loads(path.read_text())


# The targets (issue 18): every whole model within +-10 % of QEMU, every operator above 5 % of its model's time within
# +-25 %.
MODEL_TOLERANCE = 0.10
OP_TOLERANCE = 0.25
OP_SHARE = 0.05


def row_estimate(cost: costmodel.CostModel, row: dict) -> tuple[float, str, str]:
    """A measured row's estimate by the cost model, the rule used and its note (see CostModel.rule)."""
    name, coeffs, note = cost.rule(row["cost_class"], row["op"])
    return costmodel.cost(coeffs, row["features"]), name, note


def model_totals(data: dict, cost: costmodel.CostModel) -> list[dict]:
    """Per model, width and group: QEMU-measured instructions vs the cost model's estimate, the ratio, and the worst
    operator among those above OP_SHARE of the model's measured time."""
    totals: dict[tuple, dict] = {}
    for row in data["rows"]:
        group = row.get("group", "zoo")
        key = (row["model"], row["width"], group)
        t = totals.setdefault(key, {"model": row["model"], "width": row["width"], "group": group, "measured": 0.0,
                                    "estimated": 0.0, "ops": []})
        estimated, rule, note = row_estimate(cost, row)
        t["measured"] += row["instructions"]
        t["estimated"] += estimated
        t["ops"].append({"index": row["index"], "op": row["op"], "cost_class": row["cost_class"], "rule": rule,
                         "note": note, "measured": row["instructions"], "estimated": estimated})
    out = []
    for t in totals.values():
        t["ratio"] = t["estimated"] / t["measured"] if t["measured"] else None
        big = [o for o in t["ops"] if t["measured"] and o["measured"] >= OP_SHARE * t["measured"]]
        for o in big:
            o["ratio"] = o["estimated"] / o["measured"]
        worst = max(big, key=lambda o: abs(np.log(max(o["ratio"], 1e-9))), default=None)
        t["worst_op"] = worst
        t["meets"] = (t["ratio"] is not None and abs(t["ratio"] - 1) <= MODEL_TOLERANCE
                      and all(abs(o["ratio"] - 1) <= OP_TOLERANCE for o in big))
        del t["ops"]
        out.append(t)
    return out


# MLPerf Tiny's int8 reference models (github.com/mlcommons/tiny, benchmark/training/): models the cost model never
# saw, one of them (the streaming wake word model) of a design unlike the zoo's. A check, never fitted on.
MLPERF_MODELS = {"str_ww": "streaming_wakeword/trained_models/str_ww_ref_model.tflite",
                 "ad": "anomaly_detection/trained_models/ad01_int8.tflite",
                 "kws": "keyword_spotting/trained_models/kws_ref_model.tflite",
                 "vww": "visual_wake_words/trained_models/vww_96_int8.tflite",
                 "ic": "image_classification/trained_models/pretrainedResnet_quant.tflite"}
# The MLPerf Tiny reference model each zoo model stands for (the published figures are for the reference models)
MLPERF_AS_ZOO = {"kws": "ds_cnn", "vww": "mobilenet_v1", "ic": "resnet8", "ad": "autoencoder"}
ZOO_CHECK = {model: (1.0,) for model in PLAN}  # the zoo at width 1.0: a check
GROUPS = ("grid", "held_out", "zoo", "mlperf")


def run(tflm: Path, name: str, work: Path, log: Callable[[str], None] = print, mlperf: Path | None = None,
        groups: tuple[str, ...] = GROUPS) -> Path:
    """Measure under QEMU (the grid of probes, the held-out probes, the zoo and, given a checkout of mlcommons/tiny,
    MLPerf Tiny's reference models), keep the measurements, fit the cost model on the grid and write it."""
    from dataclasses import asdict

    from pipeline.model import probes

    if name not in TARGETS:
        raise PipelineError(f"unknown cost model '{name}' to calibrate: choose one of {', '.join(TARGETS)}")
    if unknown := set(groups) - set(GROUPS):
        raise PipelineError(f"unknown calibration group(s) {', '.join(sorted(unknown))}: choose from {', '.join(GROUPS)}")
    models: list[tuple[str, str, Path | None]] = []  # (group, model, .tflite)
    if mlperf is None and "mlperf" in groups:
        log("calibrate: no --mlperf checkout given, MLPerf Tiny's reference models are not timed")
    if mlperf is not None and "mlperf" in groups:
        for model, rel in MLPERF_MODELS.items():
            if not (Path(mlperf) / "benchmark/training" / rel).is_file():
                raise PipelineError(f"{mlperf} has no benchmark/training/{rel}: give a checkout of mlcommons/tiny")
            models.append(("mlperf", model, Path(mlperf) / "benchmark/training" / rel))
    work.mkdir(parents=True, exist_ok=True)
    tflm = Path(tflm)
    for group, names in (("grid", probes.GRID), ("held_out", probes.HELD_OUT)):
        if group in groups:
            models[:0] = [(group, n, None) for n in names]
    # Models already timed in this work folder (the same .tflite bytes, the same library) are not timed again.
    import hashlib

    library = tflm_library_name(tflm, TARGETS[name]["cpu"])
    timed_path = work / f"{name}.timed.json"
    timed = json.loads(timed_path.read_text()) if timed_path.is_file() else {}
    rows = []
    arenas = timed.setdefault("arena", {})  # model -> arena fact (boards/facts/arena/)
    for n, (group, model, tflite) in enumerate(models, 1):
        if tflite is None:
            tflite = probes.make(model, work / "probes" / f"{model}.tflite")
        key = f"{library}:{group}:{model}:{hashlib.sha256(Path(tflite).read_bytes()).hexdigest()}"
        if key not in timed:
            log(f"calibrate {name}: [{n}/{len(models)}] {group} {model} ...")
            fact: dict = {}
            found = time_model(tflm, name, tflite, work, model, None, group, arena=fact)
            log(f"  {len(found)} operators, {sum(r.instructions for r in found):.0f} instructions"
                + (f", arena_used_bytes {fact['arena_used_bytes']:,}" if fact else ""))
            timed[key] = [asdict(r) for r in found]
            if fact:
                arenas[Path(tflite).stem if group == "mlperf" else model] = fact
            cache.write_atomic(timed_path, json.dumps(timed))
        rows += timed[key]
    if "zoo" in groups:
        key = f"{library}:zoo"
        if key not in timed:
            log(f"calibrate {name}: the zoo at width 1.0 ...")
            timed[key] = [asdict(r) for r in measure(tflm, name, work, log, ZOO_CHECK, arena=arenas)]
            cache.write_atomic(timed_path, json.dumps(timed))
        rows += timed[key]
    from pipeline.hil.harness_build import QEMU_CPUS

    cpu = TARGETS[name]["cpu"]
    counts = {g: len({r["model"] for r in rows if r["group"] == g}) for g in groups}
    source = (f"QEMU {QEMU_CPUS[cpu][1]} running {cpu} code, -icount shift=0, TFLM microlite "
              f"{tflm_library_name(tflm, cpu)}, {len(rows)} operators of "
              + ", ".join(f"{n} {g} models" for g, n in counts.items() if n)
              + " (grid and held_out: pipeline.model.probes; zoo at width 1.0; mlperf: mlcommons/tiny reference "
              "int8 models); fitted on the grid only")
    CALIBRATION_DIR.mkdir(parents=True, exist_ok=True)
    cache.write_atomic(measurements_path(name), json.dumps({"source": source, "unit": "instructions", "rows": rows},
                                                           indent=1))
    if arenas:
        path = write_arena_facts(name, arenas, f"arena_used_bytes (xinfo's m-x-arena-used) of this project's QEMU port "
                                 f"on {QEMU_CPUS[cpu][1]} running {cpu} code, linked with TFLM microlite "
                                 f"{library}; models from `invoke generate --board={TARGETS[name]['board']}`")
        log(f"calibrate {name}: {len(arenas)} arena measurements kept in {path}")
    return refit(name)


def write_arena_facts(name: str, models: dict, source: str) -> Path:
    """Merge one run's arena facts into boards/facts/arena/<name>.json (models measured before and not now are kept,
    each with its own `measured`)."""
    from pipeline.target.mcu_arena import FACTS_DIR

    path = FACTS_DIR / f"{name}.json"
    meta = TARGETS_META[name]
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update({"core": meta["core"], "kernels": meta["kernels"], "board": TARGETS[name]["board"], "source": source})
    data["models"] = {**data.get("models", {}), **models}
    path.parent.mkdir(parents=True, exist_ok=True)
    cache.write_atomic(path, json.dumps(data, indent=1))
    return path


def relabel(name: str, work: Path) -> int:
    """Recompute the cost class and work terms of every probe row (grid, held_out) of kept measurements from the
    probe models themselves (seeded: the same models), after the classes change; the instructions are kept. Returns
    the number of rows whose class changed."""
    from pipeline.model import probes

    path = measurements_path(name)
    data = load_measurements(name)
    graphs: dict[str, object] = {}
    changed = 0
    for row in data["rows"]:
        if row.get("group") not in ("grid", "held_out"):
            continue
        if row["model"] not in graphs:  # in the order the firmware ran it: the file's, or pipeline.target.oporder's
            from pipeline.target import oporder

            probe = probes.make(row["model"], Path(work) / f"{row['model']}.tflite")
            mine = [r for r in data["rows"] if r["model"] == row["model"] and r.get("group") == row["group"]]
            g = graph.read(probe)
            candidates = [g]
            found = oporder.best_order(g)
            if found.changed:
                reordered = Path(work) / f"{row['model']}.reordered.tflite"
                reordered.write_bytes(oporder.reorder(probe.read_bytes(), found.order))
                candidates.append(graph.read(reordered))
            # the graph whose operators have the measured work terms, op for op (None: made otherwise then)
            graphs[row["model"]] = next((c for c in candidates if len(c.ops) == len(mine) and all(
                costmodel.features(c.ops[r["index"]]) == r["features"] for r in mine)), None)
        if graphs[row["model"]] is None:  # kept as measured
            continue
        op = graphs[row["model"]].ops[row["index"]]
        klass = costmodel.cost_class(op)
        changed += klass != row["cost_class"]
        row["cost_class"], row["features"] = klass, costmodel.features(op)
    cache.write_atomic(path, json.dumps(data, indent=1))
    return changed


def refit(name: str) -> Path:
    """Fit the cost model again from its kept measurements (no QEMU needed) and write it."""
    data = load_measurements(name)
    return write_cost_model(name, fit(data["rows"]), f"calibrated: {data['source']}; "
                            + CPI_RULE_NOTE.format(cpi=CPI[name]), CPI[name], CPI_NOTE[name])


def tflm_library_name(tflm: Path, cpu: str) -> str:
    from pipeline.hil.harness_build import tflm_library

    return tflm_library(Path(tflm), cpu).parent.parent.name


def check(name: str) -> dict:
    """The cost model against its calibration measurements, and (Cortex-M4F) against published MLPerf Tiny figures."""
    cost = costmodel.load(costmodel.COSTS_DIR / f"{name}.toml")
    data = load_measurements(name)
    totals = model_totals(data, cost)
    result = {"cost_model": name, "source": data["source"], "models": totals,
              "worst_ratio": max(totals, key=lambda t: abs(np.log(t["ratio"])))["ratio"] if totals else None,
              "meets": all(t["meets"] for t in totals)}
    if name == "cortex-m4f-cmsis-nn":
        from dataclasses import replace

        from pipeline import boards

        # The estimate as the published runs were made: the NUCLEO's facts, at their clock and wait states.
        board = replace(boards.load_board("nucleo-l4r5zi"), clock_mhz=MLPERF_RUN["clock_mhz"],
                        flash_wait_cycles=(MLPERF_RUN["flash_wait_cycles"],) * 2)
        cpi = cost.cpi_for(board)
        result["mlperf_cpi"] = {"cycles_per_instruction": cpi.value, "low": cpi.low, "high": cpi.high,
                                "source": cpi.source, "clock_mhz": board.clock_mhz}
        published = []
        for t in totals:
            zoo_name = MLPERF_AS_ZOO.get(t["model"]) if t["group"] == "mlperf" else t["model"]
            if (t["group"] == "mlperf" or (t["width"] == 1.0 and t["group"] == "zoo")) and zoo_name in MLPERF_L4R5ZI_MS:
                ms = t["estimated"] / board.clock_mhz / 1e3
                for stack, figures in (("microtvm", MLPERF_L4R5ZI_MICROTVM_MS), ("reference", MLPERF_L4R5ZI_MS)):
                    published.append({"model": t["model"], "stack": stack, "estimated_ms": round(ms * cpi.value, 2),
                                      "estimated_low_ms": round(ms * cpi.low, 2),
                                      "estimated_high_ms": round(ms * cpi.high, 2),
                                      "published_ms": figures[zoo_name],
                                      "ratio": round(ms * cpi.value / figures[zoo_name], 3)})
        result["mlperf_nucleo_l4r5zi"] = published
    result["per_mhz"] = per_mhz(name, totals)
    return result


def per_mhz(name: str, totals: list[dict] | None = None) -> list[dict]:
    """Every board of this cost model's core and kernels, side by side: its clock, its CPI (the one rule) and the
    estimate of each calibration model at width 1.0, with the estimate x clock / CPI (the instructions, which must
    be the same on every board) so that an estimate contradicting a board's clock shows."""
    from pipeline import boards

    cost = costmodel.load(costmodel.COSTS_DIR / f"{name}.toml")
    if totals is None:
        totals = model_totals(load_measurements(name), cost)
    models = [t for t in totals if (t["width"] == 1.0 and t["group"] == "zoo") or t["group"] == "mlperf"]
    rows = []
    for board in boards.all_boards():
        if (board.core, board.kernels) != (cost.core, cost.kernels):
            continue
        cpi = cost.cpi_for(board)
        for t in models:
            ms = t["estimated"] * cpi.value / board.clock_mhz / 1e3
            rows.append({"board": board.name, "clock_mhz": board.clock_mhz, "cpi": cpi.value, "cpi_low": cpi.low,
                         "cpi_high": cpi.high, "model": t["model"], "estimated_ms": ms,
                         "estimated_low_ms": ms * cpi.low / cpi.value, "estimated_high_ms": ms * cpi.high / cpi.value,
                         "ms_x_mhz": ms * board.clock_mhz, "ms_x_mhz_per_cpi": ms * board.clock_mhz / cpi.value})
    return rows
