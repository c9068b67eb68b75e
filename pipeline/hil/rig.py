"""`invoke hil --rig=rig.toml`: several boards measured at once, each in its own thread with its own faults, and
one aggregated result (rig.json, rig.csv, rig.md and JUnit XML with one test case per device x model x metric).

A rig file:

    [defaults]                 # optional; any device may override these
    runs = 10
    inputs = 20
    baseline = "history:5"     # gate every device x model against its own run history
    max_regression = 10.0

    [[device]]
    name = "l4-1"              # unique; names the result rows and the output folder
    board = "nucleo-l4r5zi"    # a board name or a board file
    port = "/dev/ttyACM0"      # or serial_number = "0668FF...", or usb = "0483:374e", or none: the board's USB ids
    models = ["digits", "kws"] # built models (zoo names or brought models' names)
    flash = true               # build and flash each model before measuring it (false: the device already runs it)
    max_latency_us = 250000    # limits, each optional: max_latency_us, max_energy_uj, min_accuracy (percent),
    min_accuracy = 95.0        # bit_exact (default true: every checked raw output equals the host's)

A device that fails (silent, reset, wrong firmware, a refused flash) fails its own test cases only; everything
measured before the fault is kept in its runs.jsonl, and the other devices go on.
"""
from __future__ import annotations

import csv
import io
import json
import threading
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable
from xml.sax.saxutils import escape, quoteattr

from pipeline import boards
from pipeline.cache import write_atomic
from pipeline.errors import PipelineError
from pipeline.hil import transport
from pipeline.hil.measure import MeasureOptions, measure

LIMITS = {"max_latency_us": float, "max_energy_uj": float, "min_accuracy": float, "bit_exact": bool}
DEFAULTS = {"runs": int, "warmup": int, "iterations": int, "inputs": int, "timeout": float, "energy": str,
            "baseline": str, "max_regression": float, "fast_baud": int, "flash": bool, **LIMITS}
DEVICE_KEYS = {"name", "board", "port", "serial_number", "usb", "models", *DEFAULTS}
METRICS = ("latency", "energy", "accuracy", "bit_exact")


@dataclass
class RigDevice:
    name: str
    board: boards.Board
    models: list[str]
    port: str | None = None
    serial_number: str | None = None
    usb: str | None = None
    settings: dict = field(default_factory=dict)  # the defaults, overridden by the device's own values


@dataclass
class Rig:
    path: Path
    devices: list[RigDevice]


def _typed(value, kind: type, where: str, key: str):
    ok = (isinstance(value, bool) if kind is bool else
          isinstance(value, str) and value.strip() != "" if kind is str else
          isinstance(value, int) and not isinstance(value, bool) and value >= 0 if kind is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0)
    if not ok:
        kinds = {bool: "true or false", str: "a non-empty string", int: "a whole number >= 0",
                 float: "a number >= 0"}[kind]
        raise PipelineError(f"{where}: '{key}' must be {kinds} (got {value!r})")
    return float(value) if kind is float else value


def load_rig(path: Path) -> Rig:
    """Read and check a rig file; every problem is one line naming the file, the device and the field."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"rig file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"rig file {path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"defaults", "device"}
    if unknown:
        raise PipelineError(f"rig file {path}: unknown table(s) {', '.join(sorted(unknown))} (expected [defaults] "
                            "and [[device]])")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise PipelineError(f"rig file {path}: [defaults] must be a table")
    for key, value in defaults.items():
        if key not in DEFAULTS:
            raise PipelineError(f"rig file {path} [defaults]: unknown field '{key}' (known: {', '.join(DEFAULTS)})")
        _typed(value, DEFAULTS[key], f"rig file {path} [defaults]", key)
    entries = data.get("device")
    if not isinstance(entries, list) or not entries:
        raise PipelineError(f"rig file {path}: no [[device]] entries")
    devices: list[RigDevice] = []
    for number, entry in enumerate(entries, 1):
        where = f"rig file {path}, device {number}"
        if not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise PipelineError(f"{where}: missing 'name'")
        name = entry["name"]
        where = f"rig file {path}, device '{name}'"
        if any(d.name == name for d in devices):
            raise PipelineError(f"{where}: the name is used twice; device names must be unique")
        if not all(c.isalnum() or c in "-_." for c in name):
            raise PipelineError(f"{where}: a name may hold letters, digits, '-', '_' and '.' only (it names a folder)")
        for key in entry:
            if key not in DEVICE_KEYS:
                raise PipelineError(f"{where}: unknown field '{key}'")
        if "board" not in entry:
            raise PipelineError(f"{where}: missing 'board'")
        try:
            board = boards.load_board(_typed(entry["board"], str, where, "board"))
        except PipelineError as exc:
            raise PipelineError(f"{where}: {exc}") from None
        models = entry.get("models")
        if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
            raise PipelineError(f"{where}: 'models' must be a non-empty list of model names (got {models!r})")
        ids = [k for k in ("port", "serial_number", "usb") if k in entry]
        if len(ids) > 1:
            raise PipelineError(f"{where}: give one of port, serial_number and usb (got {', '.join(ids)})")
        for key in ids:
            _typed(entry[key], str, where, key)
        if "usb" in entry and len(entry["usb"].split(":")) != 2:
            raise PipelineError(f"{where}: 'usb' must be \"VID:PID\" (got {entry['usb']!r})")
        settings = dict(defaults)
        for key in DEFAULTS:
            if key in entry:
                settings[key] = _typed(entry[key], DEFAULTS[key], where, key)
        devices.append(RigDevice(name, board, list(models), entry.get("port"), entry.get("serial_number"),
                                 entry.get("usb"), settings))
    return Rig(path, devices)


def resolve_port(device: RigDevice) -> str:
    if device.port:
        return device.port
    what = f"rig device '{device.name}' ({device.board.name})"
    if device.serial_number:
        return transport.find_port_by_serial(device.serial_number, what)
    return transport.find_port((device.usb,) if device.usb else device.board.usb_ids, what)


def measure_options(device: RigDevice, model: str, port: str, build_dir: Path, out_dir: Path,
                    db: Path | None) -> MeasureOptions:
    s = device.settings
    base = MeasureOptions(board=str(device.board.source or device.board.name), model=model, port=port,
                          build_dir=build_dir, out_dir=out_dir / device.name / model, db=db)
    chosen = {k: s[k] for k in ("runs", "warmup", "iterations", "inputs", "timeout", "energy", "baseline",
                                "max_regression", "fast_baud") if k in s}
    return replace(base, **chosen)


def _row(device: RigDevice, model: str, metric: str, status: str, value=None, limit=None, source=None,
         message: str = "") -> dict:
    return {"device": device.name, "board": device.board.name, "model": model, "metric": metric, "status": status,
            "value": value, "limit": limit, "source": source, "message": message}


def judge(device: RigDevice, model: str, result: dict) -> list[dict]:
    """One row per metric: its value, its limit, pass/fail/skipped and why."""
    s, source = device.settings, result["source"]
    regressed = result.get("regressions") or []
    rows = []
    latency = result["latency_us"]["median"]
    problems = [f for f in regressed if f.startswith("latency")]
    if "max_latency_us" in s and latency > s["max_latency_us"]:
        problems.append(f"latency median {latency:.1f} us over the limit {s['max_latency_us']:.1f} us")
    rows.append(_row(device, model, "latency", "fail" if problems else "pass", round(latency, 3),
                     s.get("max_latency_us"), source, "; ".join(problems)))
    energy = result.get("energy_uj")
    problems = [f for f in regressed if f.startswith("energy")]
    if energy is not None and "max_energy_uj" in s and energy > s["max_energy_uj"]:
        problems.append(f"energy {energy:.2f} uJ over the limit {s['max_energy_uj']:.2f} uJ")
    rows.append(_row(device, model, "energy", "skipped" if energy is None else "fail" if problems else "pass",
                     energy, s.get("max_energy_uj"), result.get("energy_source"),
                     "; ".join(problems) or ("" if energy is not None else f"no energy: {result.get('energy_source')}")))
    accuracy = result.get("accuracy")
    low = accuracy is not None and "min_accuracy" in s and accuracy < s["min_accuracy"]
    rows.append(_row(device, model, "accuracy", "skipped" if accuracy is None else "fail" if low else "pass",
                     accuracy, s.get("min_accuracy"), source,
                     f"on-target accuracy {accuracy:.2f}% under the limit {s['min_accuracy']:.2f}%" if low else
                     "" if accuracy is not None else "no labelled inputs or a test backend"))
    exact, checked = result.get("bit_exact"), result.get("inputs_checked")
    required = s.get("bit_exact", True)
    bad = exact is not None and required and exact != checked
    rows.append(_row(device, model, "bit_exact", "skipped" if exact is None or not required else
                     "fail" if bad else "pass", exact, checked if required else None, result.get("reference"),
                     f"{exact} of {checked} raw outputs equal to {result.get('reference')}" if bad else
                     "" if exact is not None else "the firmware has no xraw extension"))
    return rows


def firmware_projects(rig: Rig, build: Callable[[boards.Board, str], Path], log: Callable[[str], None] = print
                      ) -> dict[tuple[str, str], Path]:
    """Build the firmware of every board x model a device flashes, once each and before any thread starts (the
    builds share the build folder and the CPU)."""
    projects: dict[tuple[str, str], Path] = {}
    for device in rig.devices:
        if not device.settings.get("flash", True):
            continue
        for model in device.models:
            key = (device.board.name, model)
            if key not in projects:
                log(f"building {model} for {device.board.name}")
                projects[key] = build(device.board, model)
    return projects


def flasher(projects: dict[tuple[str, str], Path], runner: str | None = None
            ) -> Callable[[RigDevice, str, str], None]:
    from pipeline.hil import flash

    def prepare(device: RigDevice, model: str, port: str) -> None:
        flash.flash(device.board, projects[(device.board.name, model)], port, runner=runner)
    return prepare


def run_device(device: RigDevice, build_dir: Path, out_dir: Path, db: Path | None, log: Callable[[str], None],
               prepare: Callable[[RigDevice, str, str], None] | None) -> list[dict]:
    """Every model of one device, one after the other; a fault fails that model's metrics and the next goes on."""
    rows: list[dict] = []
    port = None
    for model in device.models:
        try:
            port = port or resolve_port(device)
            if device.settings.get("flash", True) and prepare is not None:
                log(f"flashing {model} on {port}")
                prepare(device, model, port)
            result = measure(measure_options(device, model, port, build_dir, out_dir, db), log=log, gate=False)
            rows += judge(device, model, result)
            log(f"{model}: median {result['latency_us']['median']:.1f} us ({result['source']})")
        except PipelineError as exc:
            log(f"{model}: FAILED: {exc}")
            rows += [_row(device, model, metric, "error", message=str(exc)) for metric in METRICS]
        except Exception as exc:  # a bug must not take the other devices down: report it as this device's error
            log(f"{model}: ERROR: {type(exc).__name__}: {exc}")
            rows += [_row(device, model, metric, "error", message=f"{type(exc).__name__}: {exc}") for metric in METRICS]
    return rows


def run_rig(rig: Rig, build_dir: Path, out_dir: Path, db: Path | None = None, log: Callable[[str], None] = print,
            prepare: Callable[[RigDevice, str, str], None] | None = None) -> dict:
    """Measure every device in its own thread; write and return the aggregated result."""
    lock = threading.Lock()

    def device_log(name: str) -> Callable[[str], None]:
        def say(text: str) -> None:
            with lock:
                log(f"[{name}] {text}")
        return say

    found: dict[str, list[dict]] = {}
    threads = []
    start = time.time()
    for device in rig.devices:
        def work(device=device):
            found[device.name] = run_device(device, build_dir, out_dir, db, device_log(device.name), prepare)
        thread = threading.Thread(target=work, name=f"rig-{device.name}", daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    rows = [row for device in rig.devices for row in found.get(device.name, [])]
    result = {"rig": str(rig.path), "started": start, "seconds": round(time.time() - start, 1), "rows": rows,
              "devices": {d.name: ("error" if any(r["status"] == "error" for r in found[d.name]) else
                                   "fail" if any(r["status"] == "fail" for r in found[d.name]) else "pass")
                          for d in rig.devices}}
    write_results(result, out_dir)
    return result


def write_results(result: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "rig.json", json.dumps(result, indent=2))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["device", "board", "model", "metric", "status", "value", "limit",
                                             "source", "message"])
    writer.writeheader()
    writer.writerows(result["rows"])
    write_atomic(out_dir / "rig.csv", buf.getvalue())
    write_atomic(out_dir / "rig.md", markdown(result))
    write_atomic(out_dir / "rig-junit.xml", junit(result))
    return [out_dir / n for n in ("rig.json", "rig.csv", "rig.md", "rig-junit.xml")]


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown(result: dict) -> str:
    lines = [f"# Rig {result['rig']}", "", f"{len(result['devices'])} devices, {result['seconds']} s: " +
             ", ".join(f"{name} {status}" for name, status in result["devices"].items()), "",
             "| device | board | model | metric | status | value | limit | source | message |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        message = r["message"].replace("|", "/")
        lines.append(f"| {r['device']} | {r['board']} | {r['model']} | {r['metric']} | {r['status']} | "
                     f"{_cell(r['value'])} | {_cell(r['limit'])} | {r['source'] or ''} | {message} |")
    return "\n".join(lines) + "\n"


def junit(result: dict) -> str:
    """One testsuite per device; one test case per device x model x metric (errors for a device's faults)."""
    suites = []
    for name in result["devices"]:
        rows = [r for r in result["rows"] if r["device"] == name]
        cases = []
        for r in rows:
            inner = ""
            if r["status"] == "fail":
                inner = f"<failure message={quoteattr(r['message'])}>{escape(r['message'])}</failure>"
            elif r["status"] == "error":
                inner = f"<error message={quoteattr(r['message'])}>{escape(r['message'])}</error>"
            elif r["status"] == "skipped":
                inner = f"<skipped message={quoteattr(r['message'])}/>"
            cases.append(f'    <testcase classname={quoteattr(name + "." + r["model"])} name="{r["metric"]}">'
                         f"{inner}</testcase>")
        count = {k: sum(r["status"] == k for r in rows) for k in ("fail", "error", "skipped")}
        suites.append(f"  <testsuite name={quoteattr('rig ' + name)} tests=\"{len(rows)}\" "
                      f"failures=\"{count['fail']}\" errors=\"{count['error']}\" skipped=\"{count['skipped']}\">\n"
                      + "\n".join(cases) + "\n  </testsuite>")
    return '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n' + "\n".join(suites) + "\n</testsuites>\n"
