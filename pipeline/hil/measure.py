"""`invoke measure`: handshake, upload test inputs with `db`, run `infer`, read timestamps and outputs.

Latency statistics over --runs timed `infer` commands on the first test input; on-target accuracy and bit-exact
agreement of the raw int8 outputs over --inputs test inputs. Each run is appended to runs.jsonl as soon as it
completes, so a fault part-way keeps everything measured before it.
"""
from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline import boards, buildfolder
from pipeline.target import tflite_model
from pipeline.model import validate
from pipeline.errors import Interrupted, PipelineError
from pipeline.hil import energy, history, protocol, results, transport
from pipeline.hil.dut import Device
from pipeline.hil.errors import DeviceError, DeviceTimeout, WrongFirmware
from pipeline.hil.test_backend import test_backend_outputs
from pipeline.target.profile import QEMU


@dataclass
class MeasureOptions:
    board: str = "esp32"
    model: str | None = None  # the build of this model; None: --name's, or the only or most recent build of the board
    name: str | None = None  # the build folder's name under build_dir/<board>/
    port: str | None = None
    data: str | None = None
    seed: int = 0
    build_dir: Path = Path("build")
    runs: int = 10
    warmup: int = 10
    iterations: int = 1
    inputs: int = 20
    energy: str = "estimate"
    out_dir: Path | None = None
    timeout: float = 5.0
    baseline: str | None = None  # a results.json path, or history[:N] (the median of the last N stored runs)
    max_regression: float = 10.0
    junit: Path | None = None
    profile: bool = False  # also read per-operator times (xprofile) and put them beside the estimates
    build_folder: Path | None = None  # the build to measure; default: chosen by name/model (pipeline.buildfolder)
    db: Path | None = None  # the run history; default build_dir/hil.sqlite
    fast_baud: int | None = None  # the rate for the run (xbaud); None: the board file's fast_baud; 0: stay
    rate: float | None = None  # inferences a second, for the battery life at that duty cycle
    battery_mah: float = 1000.0
    battery_v: float = 3.7  # as invoke compare: a LiPo cell's nominal voltage
    audio_clips: int = 10  # test clips (at most --inputs) streamed as audio through the device's front end


# Where a figure comes from, by the firmware's backend and platform (xinfo): every output is labelled with it.
SOURCES = {"emulated": "emulated", "test": "test-backend"}
PLATFORMS = {"qemu-icount": QEMU, "host": "host"}
# Firmware without xinfo (MLCommons' own device code) does not say what timed it: a board, QEMU or a PC alike.
UNKNOWN_SOURCE = "unknown source"


def source_of(dut: dict) -> str:
    if not dut.get("extensions"):
        return UNKNOWN_SOURCE
    if dut.get("backend") in SOURCES:
        return SOURCES[dut["backend"]]
    return PLATFORMS.get(dut.get("platform"), "device")


def handshake(device: Device) -> dict:
    """name, profile and (where the firmware has this project's extensions) xinfo."""
    info: dict = {}
    for line in device.command("name"):
        if line.kind == "name":
            info["name"] = line.values[0]
    for line in device.command("profile"):
        if line.kind in ("profile", "model"):
            info[line.kind] = line.values[0]
    try:
        for line in device.command("xinfo"):
            if line.kind in ("x_text", "x_number"):
                info[line.values[0].replace("-", "_")] = line.values[1]
    except DeviceError:
        info["extensions"] = False  # MLPerf Tiny firmware without this project's x- commands
    else:
        info["extensions"] = True
    return info


def open_link(device: Device, board: boards.Board, fast: int | None) -> dict:
    """The handshake at the board's rate; a device left at the fast rate by a run that was killed is found there
    and brought back first."""
    try:
        return handshake(device)
    except DeviceTimeout as exc:
        if not fast or fast == board.serial_baud or not hasattr(device.port, "baudrate"):
            raise
        first = exc
    device.port.baudrate = fast
    try:
        handshake(device)
    except DeviceTimeout:
        device.port.baudrate = board.serial_baud
        raise DeviceTimeout(f"{first} (nor at its fast rate, {fast} baud)") from None
    device.switch_baud(board.serial_baud)
    return handshake(device)


def faster_link(device: Device, dut: dict, board: boards.Board, fast: int | None, log) -> bool:
    """Switch to the fast rate where board and firmware allow it; True if the link now runs at it."""
    if not fast or fast == board.serial_baud:
        return False
    if int(dut.get("version") or 0) < protocol.FRAMES_VERSION or dut.get("baud_switch") != "1":
        log(f"staying at {board.serial_baud} baud: the firmware cannot switch its rate (no xbaud)")
        return False
    if device.switch_baud(fast):
        log(f"link switched to {fast} baud (xbaud)")
        return True
    log(f"the switch to {fast} baud failed on {device.name}: {device.baud_failure}; both ends went back to "
        f"{board.serial_baud} baud (set [serial] fast_baud lower, or --fast-baud=0)")
    return False


def stats(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"median": float(np.median(arr)), "mean": float(arr.mean()), "p90": float(np.percentile(arr, 90)),
            "min": float(arr.min()), "max": float(arr.max()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def _test_inputs(opts: MeasureOptions, holds: buildfolder.Holds, info: tflite_model.TFLiteModel):
    """The first --inputs examples of the model's test split (--data, or the data the zoo model was built with),
    quantized as the firmware expects them. A model brought with --tflite and measured without --data gets its
    built-in sample (the input zero point everywhere), which checks latency and bit-exact outputs but not accuracy."""
    from pipeline.model import datasets, zoo

    inp = info.inputs[0]
    out_size = int(np.prod(info.outputs[0].shape))
    zoo_model = holds.source == "zoo" or (holds.source == "unknown" and holds.model in zoo.ZOO)
    # A user's model file (--model=PATH): its test split comes from --data, or the data it was built with.
    data_source = opts.data or (holds.variant.get("data") if holds.source == "file" else None)
    if not zoo_model and data_source is None:
        return np.full([1] + inp.shape[1:], inp.zero_point, dtype=np.int8), None
    if zoo_model:
        from pipeline.build import Options, Pipeline

        pipeline = Pipeline(Options(model=holds.model, board=opts.board, data=opts.data or holds.variant.get("data"),
                                    seed=opts.seed, build_root=opts.build_dir), log=lambda _: None)
        data = pipeline.data(tuple(inp.shape[1:]), out_size if out_size > 1 else None)
    else:
        data = datasets.load(data_source, tuple(inp.shape[1:]), out_size if out_size > 1 else None, opts.seed)
    count = min(max(opts.inputs, 1), len(data.x_test))  # the first one is also the latency input
    x_q = validate.quantize(data.x_test[:count], inp)
    labels = data.y_test[:count] if data.task == "classification" else None
    return x_q, labels


INPUT_DB = re.compile(r"Input db has (\d+)")


def reload_advice(dut: dict, board: boards.Board, model: str, build: Path) -> str:
    """How to put the current build on what answered: restart an emulator, rebuild a QEMU image or host harness,
    flash a board (only where a flasher applies)."""
    from pipeline.hil import flash

    names = f"--board={board.name} --model={model}"
    if dut.get("backend") == "emulated":
        return f"restart the emulator on the current build (invoke emulate {names})"
    if dut.get("platform") == "qemu-icount":
        return f"rebuild the QEMU image from the current build (invoke firmware-qemu {names}) and restart QEMU"
    if dut.get("platform") == "host":
        return f"rebuild the host harness from the current build (invoke firmware-host {names}) and restart it"
    if any(name in flash.FLASHERS for name in board.flashers):
        return f"flash the current build (invoke flash {names})"
    return f"flash the current build's firmware ({build / 'firmware'}) with your board's own tool"


def check_shapes(port: str, dut: dict, load_lines: list, info: tflite_model.TFLiteModel,
                 advice: str = "flash this build's firmware (invoke flash)") -> None:
    """Firmware built for another model: its sizes differ from the build's, whether or not it has the extensions."""
    want_in = int(np.prod(info.inputs[0].shape))
    want_out = int(np.prod(info.outputs[0].shape))
    found = []
    if dut.get("input_bytes") not in (None, str(want_in)):
        found.append(f"it takes {dut['input_bytes']}-byte inputs, the build's model {want_in}")
    if dut.get("output_count") not in (None, "0", str(want_out)):
        found.append(f"it gives {dut['output_count']} outputs, the build's model {want_out}")
    for line in load_lines:
        match = INPUT_DB.search(line.text)
        if match and int(match.group(1)) != want_in:
            found.append(f"it says 'Input db has {match.group(1)}', the build's model takes {want_in} bytes")
    if found:
        raise WrongFirmware(f"the device on {port} runs firmware for another model: {'; '.join(found)}; {advice}")


def check_outputs(port: str, reply, info: tflite_model.TFLiteModel,
                  advice: str = "flash this build's firmware (invoke flash)") -> None:
    want = int(np.prod(info.outputs[0].shape))
    if len(reply.results) != want:
        raise WrongFirmware(f"the device on {port} answered {len(reply.results)} results, the build's model has "
                            f"{want} outputs: it runs firmware for another model; {advice}")


def _write_profile(build: Path, board: boards.Board, model: str, measured: list[tuple[str, int]], source: str,
                   out_dir: Path) -> list[Path]:
    """The build's per-layer estimates with the device's measured times beside them, in the measure folder."""
    from pipeline.target import graph, profile

    result = profile.build(graph.read(build / "model.tflite"), board, model)
    try:
        profile.add_measured(result, measured, source)
    except ValueError as exc:
        raise PipelineError(f"xprofile does not fit the build: {exc}; is the flashed firmware this build's?") from None
    return profile.write(result, out_dir)


def _check_writable_folder(option: str, folder: Path | None) -> None:
    """A folder that is, or can be made, writable: the first part of the path that exists must be a folder one can
    write to (a file in the path, or a read-only folder, is refused before the device is opened)."""
    import os

    if folder is None:
        return
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise PipelineError(f"{option}={folder}: {existing} is a file, not a folder; give {option} a folder")
    if not os.access(existing, os.W_OK):
        raise PipelineError(f"{option}={folder}: {existing} is not writable; give {option} a folder you can write to")


def check_options(opts: MeasureOptions) -> None:
    """Every input, checked before the device is opened and before anything is stored in the run history (hil calls
    it before it builds and flashes)."""
    if opts.baseline and history.parse_baseline(opts.baseline) is None:
        results.read_baseline(Path(opts.baseline))
    for option, folder in (("--out", opts.out_dir), ("--db", Path(opts.db).parent if opts.db else None)):
        _check_writable_folder(option, folder)
    if opts.junit and not Path(opts.junit).parent.is_dir():
        raise PipelineError(f"--junit={opts.junit}: the folder {Path(opts.junit).parent} does not exist")
def audio_check(device: Device, dut: dict, report: dict, opts: MeasureOptions, frames: bool, source: str,
                run_log, log, timeout: float, num_classes: int) -> dict | None:
    """Stream test clips through the device's audio front end: its features against the host's bit for bit,
    the front end's time and the model's, each labelled with its source, and the keyword it reports."""
    from pipeline.model import audio, datasets
    from pipeline.target import frontend

    settings = report.get("audio_frontend")
    if not settings or opts.audio_clips <= 0:
        return None
    if dut.get("audio_frontend") != "1":
        log("note: the model takes audio but the firmware has no audio front end (xaudio): features not checked")
        return None
    if not opts.data or not audio.is_audio(opts.data):
        log("note: the model takes audio: pass --data=<the WAV folder or int16 .npz it was built from> to stream "
            "test clips through the device's front end")
        return None
    fe = frontend.FrontEndSettings.from_dict(settings)
    clips, y = datasets.audio_test_clips(opts.data, num_classes, opts.seed, fe, log=lambda _msg: None)
    n = min(opts.audio_clips, opts.inputs)  # --inputs=0: latency only
    clips, y = clips[:n], y[:n]
    stride_bytes = 2 * settings["sample_rate"] * settings["stride_ms"] // 1000
    max_db = int(dut.get("max_db_bytes") or 27648)
    exact = correct = 0
    fe_us, model_us = [], []
    for i, (clip, label) in enumerate(zip(clips, y)):
        host = frontend.features(clip, fe).tolist()
        got, busy = device.audio_features(clip.astype("<i2").tobytes(), stride_bytes, max_db, frames, timeout)
        match = got == host
        reply = device.infer(1, 0, timeout=timeout)
        hit = bool(np.argmax(reply.results) == label)
        exact, correct = exact + match, correct + hit
        fe_us.append(busy)
        model_us.append(reply.elapsed_us)
        run_log.append({"kind": "audio", "index": i, "features_bit_exact": match, "correct": hit,
                        "frontend_us": busy, "model_us": reply.elapsed_us, "source": source, "time": time.time()})
    result = {"clips": len(clips), "features_bit_exact": exact, "accuracy": 100.0 * correct / len(clips) if len(clips) else None,
              "frontend_us": stats(fe_us), "model_us": stats(model_us), "source": source,
              "frontend_note": f"front end time for {settings['clip_samples'] / settings['sample_rate']:g} s of audio "
                               f"({source}); model time for one inference ({source})"}
    log(f"audio: {exact}/{len(clips)} clips' features bit-exact with the host front end, keyword accuracy "
        f"{result['accuracy']:.1f}%, front end {statistics.median(fe_us):.0f} us per clip, model "
        f"{statistics.median(model_us):.0f} us ({source})")
    return result


def measure(opts: MeasureOptions, log: Callable[[str], None] = print, gate: bool = True) -> dict:
    """Measure one build on one device. The figures that regressed against --baseline are in
    result["regressions"]; with gate (the default) any of them also raises, after everything is written."""
    if opts.baseline:
        history.parse_baseline(opts.baseline)  # a malformed history:N is refused before anything is measured
    if opts.fast_baud is not None and opts.fast_baud != 0 and not 1200 <= opts.fast_baud <= 16_000_000:
        raise PipelineError(f"--fast-baud must be 0 (stay at the board's rate) or 1200 to 16000000 (got {opts.fast_baud})")
    if opts.runs < 1 or opts.iterations < 1 or opts.warmup < 0 or opts.inputs < 0:
        raise PipelineError("--runs and --iterations must be at least 1, --warmup and --inputs at least 0 "
                            "(--inputs=0 measures latency only)")


def measure(opts: MeasureOptions, log: Callable[[str], None] = print, gate: bool = True) -> dict:
    """Measure one build on one device. The figures that regressed against --baseline are in
    result["regressions"]; with gate (the default) any of them also raises, after everything is written."""
    check_options(opts)
    board = boards.load_board(opts.board)
    if opts.rate is not None:
        if opts.rate <= 0 or opts.battery_mah <= 0 or opts.battery_v <= 0:
            raise PipelineError("--rate (inferences a second), --battery-mah and --battery-v must be positive")
        if board.sleep_power_mw is None:
            raise PipelineError(f"--rate needs the board's sleep power: board {board.name} has no [power] sleep_mw "
                                "(add it with sleep_source to the board file)")
    if opts.build_folder is not None:
        holds = buildfolder.read(opts.build_folder)
        if holds is None:
            raise PipelineError(f"no build of {opts.model} for {board.name} in {opts.build_folder}: run `invoke "
                                f"build --board={board.name}` first")
    else:
        holds, note = buildfolder.choose(opts.build_dir, board.name, opts.name, opts.model)
        if note:
            log(f"note: {note}")
    build, model = holds.folder, holds.model
    log(f"build folder: {build} ({model} on {board.name})")
    if not (build / "report.json").is_file():
        raise PipelineError(f"{build} holds no report.json: run `invoke build --board={board.name} "
                            f"--name={build.name}` again")
    report = json.loads((build / "report.json").read_text())
    model_bytes = (build / "model.tflite").read_bytes()
    info = tflite_model.read(build / "model.tflite")
    meter = energy.meter_for(opts.energy, board)
    x_q, labels = _test_inputs(opts, holds, info)
    if len(x_q) == 1 and opts.data is None and opts.inputs > 1:
        log(f"checking one input, not --inputs={opts.inputs}: {opts.model} was brought as a .tflite and no --data "
            "was given, so its only input is the built-in sample (the input zero point everywhere): latency and "
            "bit-exact outputs, no accuracy; pass --data for accuracy over --inputs test examples")
    port_name = opts.port or transport.find_port(board.usb_ids, board.name)
    out_dir = opts.out_dir or build / "measure"
    port = transport.open_port(port_name, board.serial_baud)  # a refused port creates no results folder
    try:
        run_log = results.RunLog(out_dir / "runs.jsonl")
    except BaseException:
        port.close()
        raise
    device = Device(port, port_name, timeout=opts.timeout)
    runs: list[dict] = []
    fast = opts.fast_baud if opts.fast_baud is not None else board.fast_baud
    switched = False
    try:
        device.drain()
        dut = open_link(device, board, fast)
        log(f"device on {port_name}: {dut.get('name')} / {dut.get('profile')} / model {dut.get('model')}, "
            f"backend {dut.get('backend', 'unknown')}")
        advice = reload_advice(dut, board, opts.model, build)
        if dut.get("model_hash") and dut["model_hash"] != report["model_hash"]:
            raise WrongFirmware(f"the device on {port_name} runs model hash {dut['model_hash']}, the build has "
                                f"{report['model_hash']}: {advice}")
        if dut.get("mode") == "energy":
            raise PipelineError(f"the device on {port_name} runs MLPerf Tiny energy-mode firmware: its timestamps are "
                                "pulses for a power board, not m-lap-us lines; run it with the MLCommons runner and its "
                                "interface board, or build without --energy-mode to measure it with invoke measure")
        if meter.needs_timestamp_pin and dut.get("timestamp_pin") == "0":
            raise PipelineError(f"--energy={meter.name}: the firmware on {port_name} drives no timestamp pin (its "
                                "board file has no [energy] table): add [energy] timestamp_pin and timestamp_gpio to "
                                "the board file, rebuild and flash")
        source = source_of(dut)
        if source == UNKNOWN_SOURCE:
            log("note: the firmware has no xinfo (MLCommons' reference firmware?): its latency is labelled "
                f"'{UNKNOWN_SOURCE}' (a board, QEMU or a PC could have timed it) and gets no energy estimate")
        if source != "device" and isinstance(meter, energy.EstimatedEnergy):
            # The estimate is the board's power times the board's latency: from any other clock it would be invented.
            meter = energy.NoMeter("none: the latency's clock is unknown (no xinfo)" if source == UNKNOWN_SOURCE
                                   else f"none: latency is {source}, not the board's")
        profile = opts.profile and int(dut.get("version") or 0) >= protocol.PROFILE_VERSION
        if opts.profile and not profile:
            log("note: --profile skipped: the firmware has no xprofile extension (it answers only the MLPerf Tiny "
                "commands); flash this project's firmware (invoke flash) for per-operator times")
        infer_timeout = max(30.0, opts.timeout)
        switched = faster_link(device, dut, board, fast, log)
        frames = bool(dut.get("extensions")) and int(dut.get("version") or 0) >= protocol.FRAMES_VERSION
        upload_start = time.perf_counter()
        check_shapes(port_name, dut, device.load(x_q[0].tobytes(), frames), info, advice)
        log(f"input uploaded in {time.perf_counter() - upload_start:.2f} s "
            f"({'xdb frames' if frames else 'db hex commands'}, {device.baud or 'no'} baud)")
        x_q = x_q[:opts.inputs]  # --inputs=0: latency only
        for run in range(opts.runs):
            meter.start()
            reply = device.infer(opts.iterations, opts.warmup if run == 0 else 0, timeout=infer_timeout)
            if run == 0:
                check_outputs(port_name, reply, info, advice)
            record = {"kind": "latency", "run": run, "iterations": reply.iterations,
                      "latency_us": reply.elapsed_us / reply.iterations, "energy_uj": meter.per_inference_uj(reply),
                      "energy_source": meter.label, "source": source, "time": time.time()}
            run_log.append(record)
            runs.append(record)
            log(f"run {run + 1}/{opts.runs}: {record['latency_us']:.1f} us ({source})")

        measured_profile = None
        if profile:
            measured_profile = device.profile()
            run_log.append({"kind": "profile", "ops": measured_profile, "source": source, "time": time.time()})

        correct = exact = 0
        output_count = int(np.prod(info.outputs[0].shape))
        if dut.get("backend") == "test":
            expected = [test_backend_outputs(sample.tobytes(), output_count) for sample in x_q]
        else:  # one host TFLM interpreter for all the inputs, in the build's arena
            expected = ([row.tobytes() for row in validate.run_tflm(model_bytes, x_q, report.get("arena_host_bytes") or report["arena_bytes"])]
                        if len(x_q) else [])
        for i, sample in enumerate(x_q):
            device.load(sample.tobytes(), frames)
            reply = device.infer(1, 0, timeout=infer_timeout)
            raw = device.raw_outputs() if dut.get("extensions") else None
            match = raw == expected[i] if raw is not None else None
            hit = bool(np.argmax(reply.results) == labels[i]) if labels is not None else None
            correct += bool(hit)
            exact += bool(match)
            run_log.append({"kind": "input", "index": i, "correct": hit, "bit_exact": match, "source": source,
                            "time": time.time()})
        audio_result = audio_check(device, dut, report, opts, frames, source, run_log, log, infer_timeout,
                                   output_count)
    except PipelineError as exc:
        run_log.append({"kind": "fault", "error": str(exc), "time": time.time()})
        raise type(exc)(f"{exc} ({len(runs)} runs kept in {run_log.path})") from None
    except KeyboardInterrupt:
        run_log.append({"kind": "interrupted", "time": time.time()})
        raise Interrupted(f"measure stopped after {len(runs)} of {opts.runs} timed runs; {run_log.path} holds "
                          f"those {len(runs)} runs (appended as each completed)") from None
    finally:
        if switched:  # leave the device at its board rate for the next run (it returns there on reset anyway)
            try:
                device.switch_baud(board.serial_baud)
            except PipelineError:
                pass
        meter.close()
        run_log.close()
        port.close()

    latencies = [r["latency_us"] for r in runs]
    energies = [r["energy_uj"] for r in runs if r["energy_uj"] is not None]
    result = {
        "model": model, "board": board.name, "port": port_name, "source": source, "device": dut,
        "latency_us": stats(latencies),
        "throughput_ips": 1e6 / statistics.median(latencies) if statistics.median(latencies) > 0 else None,
        "energy_uj": statistics.median(energies) if energies else None, "energy_source": meter.label,
        # The test backend is no model: an accuracy figure from it would only mislead.
        "accuracy": 100.0 * correct / len(x_q) if labels is not None and len(x_q) and source != "test-backend" else None,
        "inputs_checked": len(x_q),
        # None where the firmware cannot give raw outputs (no xraw): not checked, rather than 0 matches.
        "bit_exact": exact if dut.get("extensions") else None,
        "reference": "test-backend copy" if dut.get("backend") == "test" else "host TFLM",
        "arena_predicted_bytes": report["arena_bytes"],
        "arena_used_bytes": int(dut["arena_used"]) if dut.get("arena_used") not in (None, "0") else None,
        "noise_lines": device.noise_lines, "runs": runs,
        "audio": audio_result,
    }
    if opts.rate is not None and result["energy_uj"] is not None:
        life = energy.battery_life(result["energy_uj"], result["latency_us"]["median"], opts.rate,
                                   board.sleep_power_mw, opts.battery_mah, opts.battery_v, meter.label,
                                   board.sleep_power_source)
        result["battery"] = asdict(life)
    elif opts.rate is not None:
        result["battery"] = None
        log(f"no battery life: no energy figure ({meter.label})")
    written = results.write_summaries(result, out_dir)
    if measured_profile is not None:
        written += _write_profile(build, board, model, measured_profile, source, out_dir)
    log(f"results: {', '.join(str(p) for p in written)} (runs log {run_log.path})")
    db = opts.db or opts.build_dir / "hil.sqlite"
    run_id = history.record(db, result, Path(report["firmware"]["project_dir"])
                            if (report.get("firmware") or {}).get("project_dir") else None)
    log(f"stored as run {run_id} in {db}")
    failures, note = [], None
    if opts.baseline:
        last = history.parse_baseline(opts.baseline)
        if last:
            note = history.baseline_note(db, result, last, run_id)
            failures = history.regressions(db, result, last, opts.max_regression, run_id)
        else:
            note = results.baseline_note(result, Path(opts.baseline))
            failures = results.regressions(result, Path(opts.baseline), opts.max_regression)
        if note:
            log(f"note: {note}")
    result["regressions"], result["baseline_note"] = failures, note
    if opts.junit:
        results.write_junit(result, failures, opts.junit)
    if failures and gate:
        raise PipelineError("regression against the baseline: " + "; ".join(failures))
    return result
