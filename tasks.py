"""Invoke tasks: parse options, call pipeline/. `invoke --list` shows them, `invoke --help TASK` explains one."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import invoke
from invoke import Exit

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from pipeline.errors import Interrupted, PipelineError

COMMON_HELP = {
    "model": "zoo model: digits (default), sine, ds_cnn, mobilenet_v1, resnet8, autoencoder; or your own: a Keras "
             "model file (.keras or .h5, Keras 3 or tf-keras; with weights it is fine-tuned, not retrained) or a "
             "builder .py defining build_model(input_shape, num_classes, width=1.0, depth=2) (see README)",
    "trust_model": "let a model file run code it carries (a Lambda layer, custom objects); off by default, like "
                   "Keras' safe_mode: such a file is refused naming the layer",
    "board": "board name from boards/ (see `invoke boards`) or the path of your own board .toml (default esp32)",
    "data": "dataset: digits, sine, an .npz (x_train, y_train, x_test, y_test) or a folder of class sub-folders; "
            "default: the model's bundled dataset",
    "epochs": "maximum training epochs (early stopping on validation); pruning and QAT fine-tune for 1/4 and 1/8 of it",
    "sparsity": "what --prune removes, 0 to <1: the fraction of weights zeroed (magnitude) or of channels removed "
                "(structured) (default 0.5; 0 skips pruning)",
    "prune": "magnitude (zeros single weights: TFLM still stores and multiplies them, 0 bytes saved) or structured "
             "(removes whole channels: a smaller, faster model) (default magnitude)",
    "qat": "quantization-aware training before int8 conversion (default on; --no-qat converts post-training)",
    "seed": "random seed for the data split, initialisation and training (default 0)",
    "max_drop": "largest allowed drop float -> int8: accuracy points, or for regression % of the target range (default 2)",
    "width": "width multiplier for the model's layers (default 1.0): the knob for flash, RAM and latency",
    "teacher": "distil from a teacher: a width of the same model (e.g. 2.0, trained first), a Keras .h5 path, or "
               "brought (a pretrained model file teaches its pruned self while pruning fine-tunes); "
               "the report compares with the student trained alone",
    "precision": "int8 (default) or int16x8 (int16 activations, int8 weights; post-training; accuracy, arena and "
                 "profile on the host TFLM runtime, no firmware yet)",
    "model_id": "what the firmware reports as its model in `profile` (m-model-[...]; MLPerf Tiny's runner picks its "
                "script by it); default: the MLPerf Tiny id for the zoo's reference models (ds_cnn kws01, "
                "mobilenet_v1 vww01, resnet8 ic01, autoencoder ad01), the model's name otherwise",
    "memory_plan": "offline (default: plan the activations' offsets at build time and embed them in the model, where it beats "
                   "TFLM's greedy planner) or tflm (TFLM plans at run time)",
    "depth": "number of blocks (conv layers, separable blocks, residual stacks ...; default: the model's own)",
    "build_dir": "where build outputs go (default build/)",
    "name": "the build folder's name, build/<board>/NAME/ (default: the model's name): keeps variants side by side",
    "verbose": "show TensorFlow's own logs and warnings and Keras' per-epoch output (default: only this project's lines)",
    "fail_on": "budget: exit non-zero when the model does not fit or exceeds a --max-* limit; warning: also on any "
               "warning finding (findings.json and report.html are written first, for CI to read why)",
    "max_latency_ms": "budget: the latency ESTIMATE per inference, ms (a finding; fails the build with --fail-on=budget)",
    "max_ram_kb": "budget: RAM (arena + input + runtime), KiB (a finding; fails with --fail-on=budget)",
    "max_flash_kb": "budget: flash (model + sample + runtime), KiB (a finding; fails with --fail-on=budget)",
    "max_energy_uj": "budget: the energy ESTIMATE per inference, uJ (a finding; fails with --fail-on=budget)",
    "elf": "a firmware ELF you built (e.g. build/zephyr/zephyr.elf), or its GNU ld linker map: its real "
           "text/data/bss against the fit "
           "estimate, in the summary, report.json (elf_check) and the findings",
    "frontend": "audio data only: the audio front end's settings over its defaults, KEY=VALUE,... with KEY "
                "stride_ms (5, 10, 20), window_ms, mel_channels (10..60, a multiple of 10), lower_band_hz, "
                "upper_band_hz, noise_reduction, pcan, log_scale (on/off), pcan_strength; e.g. "
                "stride_ms=20,mel_channels=20 (default: 30 ms windows every 10 ms, 40 channels)"
}
GATE_OPTS = ("fail_on", "max_latency_ms", "max_ram_kb", "max_flash_kb", "max_energy_uj", "elf")


def _quiet(verbose: bool) -> None:
    """Only this project's lines unless --verbose (pipeline/quiet.py): before anything loads TensorFlow."""
    from pipeline import quiet

    quiet.setup(bool(verbose))


# The only short flags: each means one option in every task that has it (-h stays invoke's --help).
SHORT_FLAGS = {"board": "b", "model": "m"}


class ProjectTask(invoke.Task):
    """invoke's Task without its automatic short flags (which gave -h to --width in hil, `--=` to --max-flash-kb
    and -a/-o different meanings per task): an option gets a short flag only from SHORT_FLAGS."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        opts["names"] = opts["names"][:1] + ([SHORT_FLAGS[name]] if name in SHORT_FLAGS else [])
        return opts


def task(*args, **kwargs):
    """invoke's @task with ProjectTask: every task in this file declares its options the same way."""
    return invoke.task(*args, klass=ProjectTask, **kwargs)


# What a Ctrl-C leaves, by task, added to the "interrupted" line.
INTERRUPTED_KEEPS = {
    "generate": "report.json was not written (the last good one, if any, is unchanged)",
    "build": "report.json was not written (the last good one, if any, is unchanged)",
    "profile": "the profile files were not replaced",
    "measure": "results.json was not written and nothing was stored in the run history",
    "hil": "results.json was not written and nothing was stored in the run history",
    "explore": "the finished trials are kept in the study and the same command resumes it; report.html and "
               "pareto.json were not rewritten",
}


def _os_error(exc: OSError, build_dir: str | None) -> str:
    """One line for a failed read or write: the path (the real name, not its temporary one), the reason, and what
    to do about it."""
    import errno
    import re

    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    path = re.sub(r"\.\d+\.tmp(\.\w+)?$", "", str(exc.filename))
    under = bool(build_dir) and (path == str(build_dir) or path.startswith(str(build_dir).rstrip("/") + "/"))
    other = "give --build-dir another folder" if under else "choose another path"
    if exc.errno == errno.ENOSPC:
        step = f"free some space there or {other} on another disk"
    elif exc.errno == errno.ENOTDIR:
        step = f"a part of that path is a file, not a folder: {other}"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR, errno.EEXIST):
        step = f"{other}, one you can write to"
    else:
        step = "check the path"
    where = f" (under --build-dir={build_dir})" if under and path != str(build_dir) else ""
    return f"cannot use {path}{where}: {reason}; {step}"


def cli_errors(fn):
    """Bad input becomes one line on stderr and exit code 1, never a traceback; an unreadable or unwritable path
    names the path and the reason; Ctrl-C says what was kept and exits with 130."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PipelineError as exc:
            raise Exit(f"error: {exc}", code=1) from None
        except OSError as exc:
            raise Exit(f"error: {_os_error(exc, kwargs.get('build_dir'))}", code=1) from None
        except KeyboardInterrupt as exc:
            what = str(exc) if isinstance(exc, Interrupted) and str(exc) else f"{fn.__name__} stopped"
            keeps = INTERRUPTED_KEEPS.get(fn.__name__)
            raise Exit(f"interrupted: {what}" + (f"; {keeps}" if keeps else ""), code=130) from None
    return wrapper


def _refuse_unused(task_obj, values: dict, names, reason: str) -> None:
    """Options that do not apply, given anyway (a value other than the task's default), are refused in one line
    rather than silently ignored."""
    import inspect

    defaults = {n: p.default for n, p in inspect.signature(task_obj.body).parameters.items()}
    given = [n for n in names if n in values and values[n] != defaults.get(n)]
    if given:
        flags = ", ".join("--" + ("no-" if defaults[n] is True else "") + n.replace("_", "-") for n in given)
        raise PipelineError(f"{flags} {'does' if len(given) == 1 else 'do'} not apply {reason}: leave "
                            f"{'it' if len(given) == 1 else 'them'} out")


# What shapes a model in training and conversion: none of it applies to a model brought with --tflite.
TRAINING_OPTS = ("model", "epochs", "width", "depth", "teacher", "sparsity", "prune", "qat", "max_drop", "precision",
                 "frontend")
BROUGHT = "to a model brought with --tflite (it is trained and quantized already)"


def _tflm_tree(tflm) -> Path:
    """--tflm is an option, not a positional argument (a positional one took `--help` as its value and ran the task)."""
    if not tflm:
        raise PipelineError("--tflm=PATH is required: a TFLM source tree (tensorflow/tflite-micro) with microlite built "
                            "for the target (README: Without hardware)")
    return Path(tflm)


def _number(option: str, value, kind=float):
    """An option value as int or float, or one line naming the option (invoke passes what was typed as text)."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        kinds = "a whole number" if kind is int else "a number"
        raise PipelineError(f"--{option.replace('_', '-')} must be {kinds} (got {value!r})") from None


def _options(model="digits", board="esp32", data=None, epochs=None, sparsity=0.5, prune="magnitude", qat=True, seed=0,
             max_drop=2.0, width=1.0, depth=None, teacher=None, build_dir="build", tflite=None, compile_firmware=True,
             memory_plan="offline", precision="int8", name=None, fail_on=None, max_latency_ms=None, max_ram_kb=None,
             max_flash_kb=None, max_energy_uj=None, elf=None, model_id=None,
             energy_mode=False, trust_model=False, frontend=None):
    from pipeline.build import Options
    from pipeline.report.findings import Limits

    def limit(name, value):
        return None if value is None else _number(name, value)

    if prune == "structured" and sparsity not in (None, "") and _number("sparsity", sparsity) == 0:
        # (the pipeline itself builds the unpruned baseline of a structured build that way)
        raise PipelineError("--prune=structured removes the share of channels --sparsity gives, and --sparsity=0 "
                            "removes none: give --sparsity between 0 and 1 (e.g. 0.5), or leave --prune out")

    return Options(model=model, board=board, data=data,
                   epochs=_number("epochs", epochs, int) if epochs not in (None, "") else None,
                   sparsity=_number("sparsity", sparsity), prune=prune, qat=qat, seed=_number("seed", seed, int),
                   max_drop=_number("max_drop", max_drop), width=_number("width", width),
                   depth=_number("depth", depth, int) if depth is not None else None,
                   tflite=Path(tflite) if tflite else None, build_root=Path(build_dir), memory_plan=memory_plan,
                   teacher=teacher, precision=precision, name=name, model_id=model_id, energy_mode=energy_mode, trust_model=trust_model,
                   frontend=frontend or None,
                   compile_firmware=compile_firmware, fail_on=fail_on, elf=Path(elf) if elf else None,
                   limits=Limits(limit("max_latency_ms", max_latency_ms), limit("max_ram_kb", max_ram_kb),
                                 limit("max_flash_kb", max_flash_kb), limit("max_energy_uj", max_energy_uj)))


def _pipeline(**kwargs):
    from pipeline.build import Pipeline

    return Pipeline(_options(**kwargs))


def _folder(model: str) -> str:
    """The build folder of --model: a zoo name as it is, a model file or builder by its stem."""
    from pipeline.model.user_model import folder_name

    return folder_name(model)


def _print_board_outcome(outcome, pipeline=None):
    """The summary, the findings worth reading, where the report is; then the --fail-on gate, if any."""
    from pipeline.build import summary
    from pipeline.report import elf

    print(summary(outcome.report))
    if outcome.report.get("elf_check"):
        print(elf.summary(outcome.report["elf_check"]))
    counts = {s: sum(f.severity == s for f in outcome.findings) for s in ("error", "warning", "info")}
    for f in outcome.findings:
        if f.severity != "info":
            print(f"  {f.severity}: {f.message}" + (f" -> {f.recommendation}" if f.recommendation else ""))
    print(f"report: {outcome.report_path}, {outcome.page_path} (findings.json: {counts['error']} errors, "
          f"{counts['warning']} warnings, {counts['info']} notes)")
    if pipeline is not None:
        pipeline.gate(outcome)


MODEL_OPTS = ("model", "data", "epochs", "seed", "width", "depth", "teacher", "build_dir", "verbose", "trust_model",
              "frontend")
OPT_OPTS = MODEL_OPTS + ("sparsity", "prune", "qat")
CONVERT_OPTS = OPT_OPTS + ("max_drop", "precision")
BOARD_OPTS = CONVERT_OPTS + ("board", "memory_plan", "name")


def _help(names, **extra):
    return {**{n: COMMON_HELP[n] for n in names}, **extra}


@task(help=_help(MODEL_OPTS))
@cli_errors
def train(c, model="digits", data=None, epochs=None, seed="0", width="1.0", depth=None, teacher=None, build_dir="build", verbose=False, frontend=None, trust_model=False):
    """Stage 1: train the float Keras model (seeded, early stopping)."""
    _quiet(verbose)
    p = _pipeline(model=model, data=data, epochs=epochs, seed=seed, width=width, depth=depth, teacher=teacher, build_dir=build_dir,
                  frontend=frontend, trust_model=trust_model)
    print(f"stage folder: {p.train_dir}")
    print(json.dumps(p.train(), indent=2))


@task(help=_help(OPT_OPTS))
@cli_errors
def optimize(c, model="digits", data=None, epochs=None, seed="0", width="1.0", depth=None, teacher=None, build_dir="build", sparsity="0.5", prune="magnitude", qat=True, verbose=False, frontend=None, trust_model=False):
    """Stages 1-3: train, prune to --sparsity, then sparsity-preserving quantization-aware training."""
    _quiet(verbose)
    p = _pipeline(model=model, data=data, epochs=epochs, seed=seed, width=width, depth=depth, teacher=teacher, build_dir=build_dir,
                  sparsity=sparsity, prune=prune, qat=qat, frontend=frontend, trust_model=trust_model)
    print(f"stage folder: {p.model_dir}")
    print(json.dumps(p.optimize(), indent=2))


@task(help=_help(CONVERT_OPTS))
@cli_errors
def convert(c, model="digits", data=None, epochs=None, seed="0", width="1.0", depth=None, teacher=None, build_dir="build", sparsity="0.5", prune="magnitude", qat=True,
            max_drop="2.0", precision="int8", verbose=False, frontend=None, trust_model=False):
    """Stages 1-4: train, optimize, convert to full-int8 .tflite and check accuracy on TFLite and the TFLM host runtime."""
    _quiet(verbose)
    p = _pipeline(model=model, data=data, epochs=epochs, seed=seed, width=width, depth=depth, teacher=teacher, build_dir=build_dir,
                  sparsity=sparsity, prune=prune, qat=qat, max_drop=max_drop, precision=precision, frontend=frontend, trust_model=trust_model)
    print(f"stage folder: {p.model_dir}")
    print(json.dumps({"convert": p.convert(), "validate": p.validate()}, indent=2))
    print(f"model: {p.tflite_path}")


@task(help=_help(BOARD_OPTS + GATE_OPTS + ("model_id",),
                 tflite="an int8 .tflite trained elsewhere: skip training and generate from it (--data then "
                        "measures its accuracy)"))
@cli_errors
def generate(c, board="esp32", tflite=None, model="digits", data=None, epochs=None, seed="0", width="1.0", depth=None, teacher=None,
             build_dir="build", sparsity="0.5", prune="magnitude", qat=True, max_drop="2.0", precision="int8", memory_plan="offline",
             name=None, fail_on=None, max_latency_ms=None, max_ram_kb=None, max_flash_kb=None, max_energy_uj=None, elf=None, verbose=False,
             model_id=None, frontend=None, trust_model=False):
    """Firmware inputs: C array, op resolver, arena size, model header; board fit check, report.json and report.html."""
    _quiet(verbose)
    if tflite:
        _refuse_unused(generate, locals(), TRAINING_OPTS + (() if data else ("seed",)), BROUGHT)
    p = _pipeline(board=board, tflite=tflite, model=model, data=data, epochs=epochs, seed=seed, width=width, depth=depth, teacher=teacher,
                  build_dir=build_dir, sparsity=sparsity, prune=prune, qat=qat, max_drop=max_drop, precision=precision,
                  memory_plan=memory_plan, name=name, fail_on=fail_on, max_latency_ms=max_latency_ms, max_ram_kb=max_ram_kb,
                  max_flash_kb=max_flash_kb, max_energy_uj=max_energy_uj, elf=elf, model_id=model_id, frontend=frontend, trust_model=trust_model)
    _print_board_outcome(p.run_board(with_firmware=False), p)


@task(help=_help(BOARD_OPTS + GATE_OPTS + ("model_id",),
                 tflite="build firmware for an int8 .tflite trained elsewhere instead of a zoo model",
                 compile="run the framework's build tool (idf.py) when it is on PATH (default on)",
                 from_explore="build a trial of `invoke explore`: best (most accurate feasible) or a trial number",
                 export="also export the model as a library for your own firmware into export/ (as `invoke export`)",
                 energy_mode="firmware for MLPerf Tiny's energy mode: the harness behind the interface board at 9600 "
                             "baud, timestamps as low pulses on the board's [energy] timestamp pin (default off: "
                             "performance mode, the pin high during the timed loop)"))
@cli_errors
def build(c, board="esp32", model="digits", tflite=None, data=None, epochs=None, seed="0", width="1.0", depth=None, teacher=None,
          build_dir="build", sparsity="0.5", prune="magnitude", qat=True, max_drop="2.0", precision="int8", compile=True, from_explore=None, memory_plan="offline",
          name=None, export=False, fail_on=None, max_latency_ms=None, max_ram_kb=None, max_flash_kb=None,
          max_energy_uj=None, elf=None, verbose=False, model_id=None, energy_mode=False, frontend=None, trust_model=False):
    """Everything: train, optimize, convert, validate, generate, fit, render (and compile) the firmware project.

    Only stages whose inputs changed run again. Output: build/<board>/<model>/ (or --name) with report.json,
    report.html and findings.json; with --export also the model as a library for your own firmware in export/ (see
    `invoke export`).
    """
    _quiet(verbose)
    gates = dict(fail_on=fail_on, max_latency_ms=max_latency_ms, max_ram_kb=max_ram_kb, max_flash_kb=max_flash_kb,
                 max_energy_uj=max_energy_uj, elf=elf)
    if from_explore:
        _refuse_unused(build, locals(), ("tflite", "width", "depth", "teacher", "sparsity", "prune", "qat", "max_drop",
                                         "precision", "memory_plan", "frontend"),
                       "with --from-explore (the trial gives the model's options)")
    elif tflite:
        _refuse_unused(build, locals(), TRAINING_OPTS + (() if data else ("seed",)), BROUGHT)
    if from_explore:
        from dataclasses import replace

        from pipeline import explore as explore_mod

        p = _explored_pipeline(explore_mod, board, model, data, epochs, seed, build_dir, from_explore, compile, name,
                               trust_model)
        gated = _options(**gates)
        p = type(p)(replace(p.opts, limits=gated.limits, fail_on=gated.fail_on, elf=gated.elf))
    else:
        p = _pipeline(board=board, model=model, tflite=tflite, data=data, epochs=epochs, seed=seed, width=width,
                      depth=depth, teacher=teacher, build_dir=build_dir, sparsity=sparsity, prune=prune, qat=qat, max_drop=max_drop, precision=precision,
                      compile_firmware=compile, memory_plan=memory_plan, name=name, model_id=model_id,
                      energy_mode=energy_mode, frontend=frontend, trust_model=trust_model, **gates)
    _print_board_outcome(p.run_board(with_firmware=True), p)
    if export:
        _print_export(p.export(p.export_models()))


def _print_export(result: dict) -> None:
    print(f"export ({result['form']}): {result['out_dir']}")
    for folder in result["libraries"]:
        print(f"  library: {folder}")
    print(f"  example: {result['example_dir']}  (build it from the export folder: {result['build_hint']})")
    print(f"  how to use it: {result['readme']}")


@task(help=_help(BOARD_OPTS,
                 tflite="export an int8 .tflite trained elsewhere instead of a zoo model",
                 name="the build folder, build/<board>/NAME/ (default: the model's name), and the library's name: "
                      "the prefix of its C symbols (made a C identifier)",
                 also="comma-separated names of other builds of this board (build/<board>/<NAME>/) to export "
                      "alongside: one example application runs them all (two models in one firmware)",
                 out="where the export goes (default build/<board>/<name>/export/); replaced as a whole",
                 form="esp-idf, zephyr, arduino or cmake (default: the board's framework; cmake, a plain CMake "
                      "library, fits any board: bare metal, another RTOS, the host)"))
@cli_errors
def export(c, board="esp32", model="digits", tflite=None, name=None, also=None, out=None, form=None, data=None, epochs=None,
           seed="0", width="1.0", depth=None, teacher=None, build_dir="build", sparsity="0.5", prune="magnitude",
           qat=True, max_drop="2.0", precision="int8", memory_plan="offline", verbose=False, frontend=None, trust_model=False):
    """The model as a library for your own firmware, in the board's framework's form, with a README and an example.

    ESP-IDF component (esp32 boards), Zephyr module (Zephyr boards), Arduino library (nano33ble-arduino) or a
    CMake library (other boards): a C API (init, run on float or int8, sizes, labels, arena used, status texts),
    every symbol prefixed by --name. The benchmark harness `invoke build` renders is built from the same library.
    """
    _quiet(verbose)
    from pipeline import boards
    from pipeline.firmware import export as export_mod

    p = _pipeline(board=board, tflite=tflite, model=model, data=data, epochs=epochs, seed=seed, width=width, depth=depth,
                  teacher=teacher, build_dir=build_dir, sparsity=sparsity, prune=prune, qat=qat, max_drop=max_drop,
                  precision=precision, memory_plan=memory_plan, name=name, frontend=frontend, trust_model=trust_model)
    export_mod.form_for(boards.load_board(board), form)  # a form that does not fit is refused before any work
    if out:
        export_mod.check_out_dir(Path(out))
    if precision != "int8":
        raise PipelineError(f"--precision={precision}: the library runs full-int8 models only")
    models = p.export_models(tuple(n.strip() for n in (also or "").split(",") if n.strip()))
    _print_board_outcome(p.run_board(with_firmware=False))
    _print_export(p.export(models, Path(out) if out else None, form))


def _explored_pipeline(explore_mod, board, model, data, epochs, seed, build_dir, which, compile_firmware, name=None,
                       trust_model=False):
    """The pipeline of an explored trial, with the options the study ran it with."""
    from dataclasses import replace

    from pipeline.build import Pipeline

    opts = explore_mod.ExploreOptions(model=model, board=board, data=data, seed=_number("seed", seed, int),
                                      epochs=_number("epochs", epochs, int) if epochs else None,
                                      build_root=Path(build_dir), trust_model=trust_model)
    trial = explore_mod.pick(explore_mod.load_trials(opts.out_dir), which)
    if trial is None or not trial.get("params"):
        raise PipelineError(f"--from-explore={which}: no such trial with results in {opts.out_dir} "
                            "(best needs a feasible one; see trials.csv)")
    print(f"building explored trial #{trial['number']}: {explore_mod.describe(trial['params'])}")
    return Pipeline(replace(explore_mod.pipeline_options(opts, trial["params"]), max_drop=2.0,
                            compile_firmware=compile_firmware, name=name))


@task(help=_help(BOARD_OPTS,
                 tflite="profile an int8 .tflite trained elsewhere instead of a zoo model"))
@cli_errors
def profile(c, board="esp32", model="digits", tflite=None, data=None, epochs=None, seed="0", width="1.0", depth=None, teacher=None,
            build_dir="build", sparsity="0.5", prune="magnitude", qat=True, max_drop="2.0", precision="int8", memory_plan="offline",
            name=None, verbose=False, frontend=None, trust_model=False):
    """Per-layer cost on the board: MACs, weights, live memory, kernel scratch, estimated cycles/us, hot spots, int8 error.

    Writes profile.json, .csv, .md and .png next to the build (build/<board>/<model>/, or --name). Latency and energy are
    ESTIMATES from the board's cost model (boards/costs/); `invoke measure --profile` adds measured times.
    """
    _quiet(verbose)
    if tflite:
        _refuse_unused(profile, locals(), TRAINING_OPTS + (() if data else ("seed",)), BROUGHT)
    p = _pipeline(board=board, model=model, tflite=tflite, data=data, epochs=epochs, seed=seed, width=width, depth=depth, teacher=teacher,
                  build_dir=build_dir, sparsity=sparsity, prune=prune, qat=qat, max_drop=max_drop, precision=precision,
                  memory_plan=memory_plan, name=name, frontend=frontend, trust_model=trust_model)
    _, out_dir = p.run_profile()
    print((out_dir / "profile.md").read_text())
    print(f"profile: {out_dir / 'profile.md'} (.json, .csv, .png)")


@task(help=_help(CONVERT_OPTS + ("memory_plan",),
                 boards="comma-separated board names or .toml paths (default: every board in boards/)",
                 tflite="compare an int8 .tflite trained elsewhere instead of a zoo model",
                 rate="inferences the application runs, per s, min or h, e.g. 10/s, 30/min (default 1/s): for the "
                      "battery life, sleeping at the board's [power] sleep_mw in between",
                 battery_mah="battery capacity, mAh (default 1000)",
                 battery_v="battery voltage, V (default 3.7, a LiPo cell's nominal)",
                 sort="order of the rows: latency (default), energy, headroom (the tighter of flash and RAM) or battery",
                 out="folder for compare.json/.md/.html (default build/compare/<model>)"))
@cli_errors
def compare(c, model="digits", boards=None, tflite=None, data=None, epochs=None, seed="0", width="1.0", depth=None,
            teacher=None, build_dir="build", sparsity="0.5", prune="magnitude", qat=True, max_drop="2.0",
            precision="int8", memory_plan="offline", rate="1/s", battery_mah="1000", battery_v="3.7", sort="latency",
            out=None, verbose=False, frontend=None, trust_model=False):
    """Which board for this model: fits, flash/RAM headroom, arena, latency and energy ESTIMATES, battery life.

    One row per board, in a table and compare.html. The model is trained once (stage cache); only the board
    stages (arena with the board's kernels, cost model) run per board.
    """
    _quiet(verbose)
    from pipeline import compare as compare_mod

    opts = compare_mod.CompareOptions(
        pipeline=_options(model=model, tflite=tflite, data=data, epochs=epochs, seed=seed, width=width, depth=depth,
                          teacher=teacher, build_dir=build_dir, sparsity=sparsity, prune=prune, qat=qat,
                          max_drop=max_drop, precision=precision, memory_plan=memory_plan, compile_firmware=False,
                          frontend=frontend, trust_model=trust_model),
        boards=[b.strip() for b in boards.split(",") if b.strip()] if boards else [],
        rate_per_s=compare_mod.parse_rate(rate), battery_mah=_number("battery_mah", battery_mah),
        battery_v=_number("battery_v", battery_v), sort=sort, out_dir=Path(out) if out else None)
    from pipeline.build import _check_options

    _check_options(opts.pipeline)
    compare_mod.check(opts)
    result = compare_mod.run(opts)
    rows = [compare_mod.Row(**{k: v for k, v in r.items() if k in compare_mod.Row.__dataclass_fields__})
            for r in result["rows"]]
    print(compare_mod.table(result, rows), end="")
    print(f"compare: {result['out_dir']}/compare.html (compare.json, compare.md)")


@task(help={"model": COMMON_HELP["model"], "board": COMMON_HELP["board"], "data": COMMON_HELP["data"],
            "trials": "trials the study should finish (default 30): complete, or pruned as hopeless; a trial whose "
                      "worker died is run again, not counted; an interrupted study resumes",
            "objectives": "comma-separated: accuracy and any of latency, ram, flash, energy (default accuracy,latency,ram)",
            "max_latency_ms": "limit on the estimated latency per inference, ms",
            "max_ram_kb": "limit on RAM (arena + input + runtime), KiB; the board's budget always applies",
            "max_flash_kb": "limit on flash (model + runtime), KiB; the board's budget always applies",
            "min_accuracy": "lowest acceptable int8 accuracy, %; far-off trials stop after training",
            "epochs": "training epochs per trial (default: the model's)", "seed": COMMON_HELP["seed"],
            "storage": "Optuna storage URL shared by workers, e.g. sqlite:////nfs/study.db or "
                       "postgresql://user@host/db (default: sqlite under build/<board>/<model>/explore/)",
            "measure": "measure the Pareto trials: emulate (an emulated device) or the board's serial port (each "
                       "trial's firmware is built and flashed first); plotted beside the estimates",
            "heartbeat": "seconds between a running trial's heartbeats in the study's database (default 30); a trial "
                         "silent for twice that (its worker died) is marked failed and run again by another worker",
            "build_dir": COMMON_HELP["build_dir"], "verbose": COMMON_HELP["verbose"],
            "trust_model": COMMON_HELP["trust_model"]})
@cli_errors
def explore(c, model="digits", board="esp32", data=None, trials="30", objectives="accuracy,latency,ram",
            max_latency_ms=None, max_ram_kb=None, max_flash_kb=None, min_accuracy=None, epochs=None, seed="0",
            storage=None, build_dir="build", measure=None, heartbeat="30", verbose=False, trust_model=False):
    """Search width, depth, pruning and QAT under the board's budget: Pareto front, report.html, the pick.

    Build the pick with `invoke build --from-explore=best` (or a trial number).
    """
    _quiet(verbose)
    from pipeline import explore as explore_mod

    opts = explore_mod.ExploreOptions(
        model=model, board=board, data=data, trials=_number("trials", trials, int),
        objectives=tuple(o.strip() for o in objectives.split(",") if o.strip()),
        max_latency_ms=_number("max_latency_ms", max_latency_ms) if max_latency_ms else None,
        max_ram_kb=_number("max_ram_kb", max_ram_kb) if max_ram_kb else None,
        max_flash_kb=_number("max_flash_kb", max_flash_kb) if max_flash_kb else None,
        min_accuracy=_number("min_accuracy", min_accuracy) if min_accuracy else None,
        epochs=_number("epochs", epochs, int) if epochs else None, seed=_number("seed", seed, int), storage=storage,
        build_root=Path(build_dir), measure=measure, heartbeat=_number("heartbeat", heartbeat, int),
        trust_model=trust_model)
    result = explore_mod.run(opts)
    print(f"Pareto front: {', '.join('#' + str(r['number']) for r in result['pareto']) or 'empty'}")
    best = result["best"]
    if best:
        m = best["metrics"]
        print(f"pick: trial #{best['number']} ({explore_mod.describe(best['params'])}): {m['metric_name']} {m['accuracy']:.2f}, "
              f"{m['latency_ms']:.3f} ms (estimate), RAM {m['ram_kb']:.1f} KiB, flash {m['flash_kb']:.1f} KiB")
        print(f"build it: invoke build --board={board} --model={model} --from-explore=best")
    else:
        print("no feasible trial: relax a limit (--max-*) or run more --trials")
    print(f"report: {result['out_dir']}/report.html (trials.csv, trials.json, pareto.json, pareto.png)")


@task(help={"board": "show one board, by name or path, instead of the list"})
@cli_errors
def boards(c, board=None):
    """List the boards with their flash and RAM budgets, framework and flashers."""
    from pipeline.boards import all_boards, load_board

    rows = [load_board(board)] if board else all_boards()
    name_w = max(len("board"), *(len(b.name) for b in rows))
    core_w = max(len("core"), *(len(b.core) for b in rows))
    print(f"{'board':<{name_w}} {'core':<{core_w}} {'MHz':>4} {'flash KiB':>10} {'RAM KiB':>8}  {'framework':<9} "
          f"{'kernels':<9} flashers")
    for b in rows:
        print(f"{b.name:<{name_w}} {b.core:<{core_w}} {b.clock_mhz:>4} {b.flash_bytes / 1024:>10.0f} "
              f"{b.ram_bytes / 1024:>8.0f}  {b.framework:<9} {b.kernels:<9} {', '.join(b.flashers) or '-'}")


@task(auto_shortflags=False,
      help={"build_dir": COMMON_HELP["build_dir"],
            "board": "clean only this board's build folders (a name, as in build/<board>/)",
            "model": "clean only this model's build folders, on every board unless --board is given (without "
                     "--board, also its stage cache build/_models/<model>/)",
            "name": "clean only the build folders of this name (build/<board>/NAME/, as given to --name)",
            "history": "also remove the run history (build/hil.sqlite, history.png); kept by default",
            "explore": "also remove the explore studies in scope (build/<board>/<model>/explore/); kept by default",
            "dry_run": "print what would be removed, remove nothing"})
@cli_errors
def clean(c, build_dir="build", board=None, model=None, name=None, history=False, explore=False, dry_run=False):
    """Remove build outputs: all of build/ but the run history and explore studies, or --board/--model/--name only."""
    from pipeline import buildfolder

    if board is not None and str(board).endswith(".toml") and Path(board).is_file():
        from pipeline.boards import load_board

        board = load_board(board).name
    plan = buildfolder.clean_plan(Path(build_dir), board, (_folder(model) if model else None), name, history, explore)
    if not plan.remove:
        print(f"nothing to remove in {build_dir}" + "".join(f" --{k}={v}" for k, v in
                                                          (("board", board), ("model", model), ("name", name)) if v))
    for path in plan.remove:
        print(f"{'would remove' if dry_run else 'removing'} {path}")
    for path, option in plan.kept:
        print(f"kept {path} ({option} removes it)")
    if not dry_run:
        buildfolder.remove(plan.remove)


@task(help={"board": COMMON_HELP["board"], "build_dir": "scratch build folder for the benchmark (default build/bench)"})
@cli_errors
def bench(c, board="esp32", build_dir="build/bench"):
    """Benchmark: cold and warm `invoke build`, int8/float size ratio, accuracy float/int8/TFLM, sparsity."""
    from pipeline.bench import run_benchmark

    run_benchmark(board=board, build_dir=Path(build_dir))


@task(help={"seconds": "host wall time the front end is timed for (default 2)",
            "tflite": "a keyword model's .tflite: also show the front end's share of front end + one inference",
            "frontend": "the front end's settings over its defaults, KEY=VALUE,... as for `invoke build --frontend` "
                        "(default: the defaults)"})
@cli_errors
def bench_frontend(c, seconds="2", tflite=None, frontend=None):
    """Benchmark the audio front end: feature frames per second on the host (measured) and its cost per board's
    core (estimated), at the default settings or the ones given."""
    from pipeline.bench import frontend_benchmark
    from pipeline.target import frontend as frontend_mod

    frontend_benchmark(_number("seconds", seconds), Path(tflite) if tflite else None, frontend_mod.parse(frontend))


MEASURE_HELP = {
    "board": COMMON_HELP["board"],
    "model": "the model whose build is measured: a zoo name, your model file or builder (.keras, .h5, .py: its "
             "build folder is the file's stem) or a brought model's name (its .tflite stem) "
             "(default: the only, or the most recent, build of the board)",
    "name": "the build folder to measure, build/<board>/NAME/ (as given to `invoke build --name`)",
    "port": "serial port: a device path (/dev/ttyUSB0) or a pyserial URL (socket://host:port, rfc2217://...); "
            "default: found by the board's USB VID:PID",
    "runs": "timed `infer` commands for the latency statistics (default 10)",
    "warmup": "warm-up inferences before the first timed run (default 10)",
    "iterations": "inferences per timed run; latency is the run's time divided by it (default 1)",
    "inputs": "test inputs uploaded for on-target accuracy and bit-exact output checks (default 20)",
    "energy": "estimate (board power x latency, labelled estimated), firmware (on-board meter), ppk2:PORT (a Nordic "
              "PPK2, timestamp pin on its D0) or lpm01a:PORT (an ST LPM01A power board, MLPerf Tiny's, timestamp pin "
              "on its D7); both power the DUT at 3.3 V",
    "data": COMMON_HELP["data"],
    "seed": "seed of the data split the test inputs are drawn from: give the build's --seed so they are its held-out "
            "test examples (default 0; trains nothing)",
    "out": "folder for runs.jsonl, results.json/.csv and summary.md (default build/<board>/<name>/measure)",
    "baseline": "a previous results.json, or history[:N] (the median of the last N runs of this board and model in "
                "the run history, default 5): exit non-zero when latency or energy regress by more than "
                "--max-regression",
    "db": "the run history SQLite file every measurement is stored in (default build/hil.sqlite)",
    "max_regression": "allowed regression against --baseline, in percent (default 10)",
    "junit": "also write JUnit XML to this file, for CI rigs",
    "timeout": "seconds to wait for the device's answer to a command (default 5; infer waits at least 30)",
    "build_dir": COMMON_HELP["build_dir"],
    "profile": "also read each operator's time (xprofile) and write profile.md/.png with measured beside estimated",
    "fast_baud": "switch the console to this baud rate for the run (xbaud, firmware extension v3; falls back by "
                 "itself if the link does not carry it); 0 stays at the board's rate; default: the board file's "
                 "[serial] fast_baud",
}


def _measure_options(board, model, port, runs, warmup, iterations, inputs, energy, data, seed, out, baseline,
                     max_regression, junit, timeout, build_dir, profile=False, db=None, fast_baud=None, name=None,
                     rate=None, battery_mah="1000", battery_v="3.7", audio_clips="10"):
    from pipeline.hil.measure import MeasureOptions

    return MeasureOptions(board=board, model=model, name=name, port=port, runs=_number("runs", runs, int),
                          warmup=_number("warmup", warmup, int), iterations=_number("iterations", iterations, int),
                          inputs=_number("inputs", inputs, int), energy=energy, data=data,
                          seed=_number("seed", seed, int), out_dir=Path(out) if out else None,
                          baseline=baseline, db=Path(db) if db else None,
                          max_regression=_number("max_regression", max_regression),
                          junit=Path(junit) if junit else None, timeout=_number("timeout", timeout),
                          build_dir=Path(build_dir), profile=profile,
                          fast_baud=None if fast_baud is None else _number("fast_baud", fast_baud, int),
                          rate=None if rate is None else _number("rate", rate),
                          battery_mah=_number("battery_mah", battery_mah), battery_v=_number("battery_v", battery_v),
                          audio_clips=_number("audio_clips", audio_clips, int))


def _print_measurement(result):
    """One line a figure; figures not from a real device (emulated, test backend) say so on every line."""
    lat = result["latency_us"]
    label = result["source"]
    tag = "" if label == "device" else f"[{label}] "
    print(f"{tag}latency ({label}): median {lat['median']:.1f} us, mean {lat['mean']:.1f}, p90 {lat['p90']:.1f}, "
          f"min {lat['min']:.1f}, max {lat['max']:.1f}, std {lat['std']:.1f} over {len(result['runs'])} runs")
    if result["energy_uj"] is not None:
        print(f"{tag}energy per inference ({result['energy_source']}): {result['energy_uj']:.2f} uJ")
    if result.get("battery"):
        life = result["battery"]
        print(f"{tag}battery life at {life['rate_hz']:g} inferences/s: {life['hours']:.1f} h "
              f"({life['hours'] / 24:.1f} days) on {life['battery_mah']:g} mAh ({life['rule']})")
    if result["accuracy"] is not None:
        print(f"{tag}on-target accuracy ({label}): {result['accuracy']:.2f}% over {result['inputs_checked']} inputs")
    if result["bit_exact"] is None:
        print(f"{tag}raw outputs: not checked (the firmware has no xraw extension)")
    else:
        print(f"{tag}raw outputs equal to {result['reference']}: {result['bit_exact']} of {result['inputs_checked']}")
    audio = result.get("audio")
    if audio:
        print(f"{tag}audio front end ({audio['source']}): features of {audio['features_bit_exact']} of {audio['clips']} "
              f"test clips bit-exact with the host's; keyword accuracy {audio['accuracy']:.1f}%; front end "
              f"{audio['frontend_us']['median']:.0f} us per clip, model {audio['model_us']['median']:.0f} us per "
              f"inference (median, {audio['source']})")
    if result.get("arena_used_bytes"):
        print(f"{tag}arena: predicted {result['arena_predicted_bytes']} bytes, device uses {result['arena_used_bytes']}")


@task(help={**MEASURE_HELP,
            "rate": "inferences a second: also print the battery life at that duty cycle (the measured energy per "
                    "inference, the board file's [power] sleep_mw between inferences)",
            "battery_mah": "the battery's capacity for --rate, in mAh (default 1000)",
            "battery_v": "the battery's voltage for --rate, V (default 3.7, a LiPo cell's nominal; as invoke compare)",
            "audio_clips": "audio models: test clips streamed as 16-bit PCM through the device's front end, its "
                           "features checked bit for bit and timed (at most --inputs; default 10, 0: none)"})
@cli_errors
def measure(c, board="esp32", model=None, port=None, runs="10", warmup="10", iterations="1", inputs="20",
            energy="estimate", data=None, seed="0", out=None, baseline=None, max_regression="10.0", junit=None,
            timeout="5.0", build_dir="build", profile=False, db=None, fast_baud=None, name=None, rate=None,
            battery_mah="1000", battery_v="3.7", audio_clips="10"):
    """Measure on the device over serial: latency statistics, energy, on-target accuracy, bit-exact outputs."""
    from pipeline.hil.measure import measure as run_measure

    model = _folder(model)
    _print_measurement(run_measure(_measure_options(board, model, port, runs, warmup, iterations, inputs, energy,
                                                    data, seed, out, baseline, max_regression, junit, timeout,
                                                    build_dir, profile, db, fast_baud, name, rate, battery_mah,
                                                    battery_v, audio_clips)))


def _chosen_build(build_dir, board_name, name, model):
    """The build a command acts on (--name, --model, or the only or most recent one of the board), said aloud."""
    from pipeline import buildfolder

    holds, note = buildfolder.choose(Path(build_dir), board_name, name, model)
    if note:
        print(f"note: {note}")
    print(f"build folder: {holds.folder} ({holds.model} on {holds.board})")
    return holds


@task(help={"board": COMMON_HELP["board"],
            "model": "the built model to emulate (default: the only, or the most recent, build of the board)",
            "name": "the build folder to emulate, build/<board>/NAME/", "build_dir": COMMON_HELP["build_dir"],
            "realtime": "pace each inference to its modelled latency on the host's clock, for clients with "
                        "wall-clock rules (MLPerf Tiny's runner wants timed windows of at least 10 s)"})
@cli_errors
def emulate(c, board="esp32", model=None, build_dir="build", name=None, realtime=False):
    """An EMULATED device on a pseudo-terminal: the real protocol, TFLM host outputs, estimated latency."""
    from pipeline.boards import load_board
    from pipeline.hil.emulate import device_for_build, serve

    b = load_board(board)
    holds = _chosen_build(build_dir, b.name, name, (_folder(model) if model else None))
    model = holds.model
    device = device_for_build(Path(build_dir), b, model, holds.folder, realtime=realtime)

    def ready(path):
        print(f"EMULATED {b.name} running {model} on {path} (latency is the board's estimate: "
              f"{device.latency_us:.1f} us per inference{', paced in real time' if realtime else ''})")
        print(f"measure it with: invoke measure --board={b.name} --name={holds.name} --port={path}   (Ctrl-C stops)",
              flush=True)

    try:
        serve(device, ready)
    except KeyboardInterrupt:
        print("emulated device stopped")


@task(help={"board": COMMON_HELP["board"],
            "model": "the built model whose firmware is flashed (default: the only, or the most recent, build of the "
                     "board)",
            "name": "the build folder whose firmware is flashed, build/<board>/NAME/",
            "port": "serial port of the board (esptool) or the probe's unique id (pyocd); default: found by USB VID:PID",
            "runner": "flashing tool, one of the board's [flash] runners (default: the first one installed on this computer)",
            "image": "firmware image to flash instead of the build's (ELF/HEX for pyocd, flasher_args.json for esptool)",
            "build_dir": COMMON_HELP["build_dir"]})
@cli_errors
def flash(c, board="esp32", model=None, port=None, runner=None, image=None, build_dir="build", name=None):
    """Flash the built firmware with the board's flasher (esptool for ESP32 boards, pyocd for Cortex-M)."""
    from pipeline.boards import load_board
    from pipeline.hil import flash as flash_mod
    from pipeline.hil.transport import find_port

    b = load_board(board)
    chosen = flash_mod.choose(b, runner)
    if port is None and chosen.name == "esptool":
        port = find_port(b.usb_ids, b.name)
    project = _chosen_build(build_dir, b.name, name, (_folder(model) if model else None)).folder / "firmware"
    if image is None and not project.is_dir():
        raise PipelineError(f"{project.parent} holds no firmware project: run `invoke build --board={b.name} "
                            f"--name={project.parent.name}` first")
    flash_mod.flash(b, project, port, image=Path(image) if image else None, flasher=chosen)
    print(f"flashed {b.name} on {port} with {chosen.name}")


@task(help={**MEASURE_HELP, **{k: COMMON_HELP[k] for k in ("epochs", "sparsity", "prune", "qat", "width", "depth", "teacher",
                                                            "name", "trust_model")},
            "seed": "random seed for the data split, initialisation and training of the build, and so for the test "
                    "inputs measured (default 0)",
            "tflite": "an int8 .tflite trained elsewhere: build, flash and measure it (its name is the model's)",
            "runner": "flashing tool (default: the board's first available runner)",
            "no_flash": "measure what already runs on --port (an `invoke emulate` device, QEMU, a flashed board): no "
                        "compiling, no flashing; the device must run this build's model",
            "rig": "a rig file (TOML) listing several devices, their ports, models and limits: all are built, flashed "
                   "and measured in parallel, each with its own faults, into one rig.json/.csv/.md and JUnit XML "
                   "(default folder build/rig/<rig name>, or --out); see pipeline/hil/rig.py for the format"})
@cli_errors
def hil(c, board="esp32", model="digits", port=None, runs="10", warmup="10", iterations="1", inputs="20",
        energy="estimate", data=None, seed="0", out=None, baseline=None, max_regression="10.0", junit=None,
        timeout="5.0", build_dir="build", epochs=None, sparsity="0.5", prune="magnitude", qat=True, width="1.0", depth=None, teacher=None, runner=None, profile=False, tflite=None, db=None, fast_baud=None, rig=None,
        name=None, trust_model=False, no_flash=False):
    """Build -> flash -> measure -> compare, in one command (needs the board's build tool, e.g. idf.py).

    --no-flash measures what already runs on --port (an `invoke emulate` device, QEMU, a board flashed before):
    the build is made (without compiling) only to know the model, and the device must run that model.
    """
    from dataclasses import replace

    from pipeline.boards import load_board
    from pipeline.hil import flash as flash_mod
    from pipeline.hil.measure import check_options as check_measure_options
    from pipeline.hil.measure import measure as run_measure
    from pipeline.hil.transport import find_port

    if rig:
        _refuse_unused(hil, locals(), ("board", "model", "tflite", "runs", "warmup", "iterations", "inputs", "energy",
                                       "baseline", "max_regression", "junit", "timeout", "profile", "fast_baud"),
                       "with --rig (the rig file gives each device's board, models, runs and limits)")
        return _hil_rig(Path(rig), port, out, build_dir, db, runner,
                        dict(data=data, epochs=epochs, seed=seed, width=width, depth=depth, teacher=teacher,
                             sparsity=sparsity, prune=prune, qat=qat))

    if tflite:
        _refuse_unused(hil, locals(), TRAINING_OPTS, BROUGHT)
    if no_flash:
        _refuse_unused(hil, locals(), ("runner",), "with --no-flash (nothing is flashed)")
    measured = Path(tflite).stem if tflite else _folder(model)  # a brought model is measured by its name
    measure_opts = _measure_options(board, measured, port, runs, warmup, iterations, inputs, energy, data, seed, out,
                                    baseline, max_regression, junit, timeout, build_dir, profile, db, fast_baud, name)
    check_measure_options(measure_opts)  # a bad --baseline or --junit is refused before building and flashing
    b = load_board(board)
    p = _pipeline(board=board, model=model, tflite=tflite, data=data, epochs=epochs, seed=seed, width=width,
                  depth=depth, teacher=teacher, name=name, trust_model=trust_model, build_dir=build_dir,
                  sparsity=sparsity, prune=prune, qat=qat, compile_firmware=not no_flash)
    before = _built_model_hash(p.board_dir(b))
    outcome = p.run_board(with_firmware=True)
    if no_flash:
        if before and before != outcome.report["model_hash"]:
            print(f"note: this build replaced the model in {p.board_dir(b)} (hash {before} -> "
                  f"{outcome.report['model_hash']}); the device on the port still runs what it was given (an emulator "
                  "serves the build it was started on): the measurement checks which one it is")
    else:
        firmware = outcome.report["firmware"] or {}
        if not firmware.get("compiled"):
            raise PipelineError(f"hil needs compiled firmware, and it was not compiled: {firmware.get('message')}; "
                                "or measure what already runs on the port (an emulator, a flashed board) with "
                                "--no-flash --port=PORT")
        port = port or find_port(b.usb_ids, b.name)
        flash_mod.flash(b, Path(firmware["project_dir"]), port, runner=runner)
    _print_measurement(run_measure(replace(measure_opts, port=port, build_folder=outcome.report_path.parent)))


def _built_model_hash(folder: Path) -> str | None:
    """The model hash of the build in a folder (what a device flashed from it, or an emulator started on it, runs)."""
    from pipeline import buildfolder

    holds = buildfolder.read(folder)
    return holds.model_hash if holds else None


def _hil_rig(path, port, out, build_dir, db, runner, build_opts):
    from pipeline.hil import rig as rig_mod

    if port:
        raise PipelineError("--port does not go with --rig: the rig file gives each device's port")
    rig = rig_mod.load_rig(path)

    def build(board, model):
        outcome = _pipeline(board=str(board.source or board.name), model=model, build_dir=build_dir,
                            **build_opts).run_board(with_firmware=True)
        firmware = outcome.report["firmware"] or {}
        if not firmware.get("compiled"):
            raise PipelineError(f"the rig flashes {model} on {board.name}, and its firmware was not compiled: "
                                f"{firmware.get('message')}")
        return Path(firmware["project_dir"])

    projects = rig_mod.firmware_projects(rig, build)
    out_dir = Path(out) if out else Path(build_dir) / "rig" / path.stem
    result = rig_mod.run_rig(rig, Path(build_dir), out_dir, Path(db) if db else None,
                             prepare=rig_mod.flasher(projects, runner))
    print(rig_mod.markdown(result), end="")
    print(f"rig results: {', '.join(str(out_dir / n) for n in ('rig.json', 'rig.csv', 'rig.md', 'rig-junit.xml'))}")
    bad = {name: status for name, status in result["devices"].items() if status != "pass"}
    if bad:
        raise PipelineError(f"rig: {len(bad)} of {len(result['devices'])} devices did not pass ("
                            + ", ".join(f"{n} {s}" for n, s in bad.items()) + f"): see {out_dir / 'rig.md'}")


@task(help={"board": COMMON_HELP["board"], "sparsity": "fraction of channels removed (default 0.5)",
            "build_dir": "scratch build folder for the benchmark (default build/bench-pruning)"})
@cli_errors
def bench_pruning(c, board="esp32", sparsity="0.5", build_dir="build/bench-pruning"):
    """Benchmark: structured pruning vs unpruned on digits and the DS-CNN: MACs, flash, arena, latency, accuracy."""
    from pipeline.bench import run_pruning_benchmark

    run_pruning_benchmark(board=board, build_dir=Path(build_dir), sparsity=_number("sparsity", sparsity))


@task(help={"board": COMMON_HELP["board"], "sparsity": "fraction of channels removed (default 0.5)",
            "epochs": "fine-tuning epochs of the pruned model (default 10)",
            "build_dir": "scratch build folder for the benchmark (default build/bench-own-model)"})
@cli_errors
def bench_own_model(c, board="esp32", sparsity="0.5", epochs="10", build_dir="build/bench-own-model"):
    """Benchmark: a pretrained Keras 3 model brought with --model=FILE, pruned structured vs converted as it is."""
    from pipeline.bench import run_own_model_benchmark

    run_own_model_benchmark(board=board, build_dir=Path(build_dir), sparsity=_number("sparsity", sparsity),
                            epochs=_number("epochs", epochs, int))


@task(help={"build_dir": "scratch build folder for the benchmark (default build/bench-memory)"})
@cli_errors
def bench_memory(c, build_dir="build/bench-memory"):
    """Benchmark: TFLM's greedy arena plan vs the lower bound vs the offline plan, per zoo model and width."""
    from pipeline.bench import run_memory_benchmark

    run_memory_benchmark(Path(build_dir))


@task(help={"core": "only this core's measurements (cortex-m4f, cortex-m7, cortex-m33-nodsp, cortex-m0plus; "
                    "default: every core with measurements in boards/facts/arena/)"})
@cli_errors
def bench_arena(c, core=None):
    """Benchmark: the generated kTensorArenaSize vs the device's arena_used_bytes per model and core, recomputed
    from the measurements kept in boards/facts/arena/ (QEMU runs of the real TFLM)."""
    from pipeline.bench import ARENA_TARGET_OVER, arena_check

    rows = arena_check(core=core)

    def group(r):
        return f"{r['core']} {r['kernels']}" + (f" ({r['framework']}'s TFLM)" if r["framework"] else "")

    print(f"generated arena vs device arena_used_bytes (target: never below, at most {ARENA_TARGET_OVER} bytes above)")
    print(f"  {'core':<34} {'model':<22} {'generated':>9} {'device':>9} {'over':>6}  note")
    for r in rows:
        note = []
        if r["planning_peak"]:
            note.append(f"TFLM peaks at {r['planning_bytes']} B during AllocateTensors (planning), above what "
                        "arena_used_bytes shows after it")
        if r["predicted_used"] != r["device_used"]:
            note.append(f"rule's arena_used_bytes {r['predicted_used']}")
        if r["unknown_ops"]:
            note.append(f"ops without 32-bit sizes (estimated): {', '.join(r['unknown_ops'])}")
        if r["ran_in_bytes"]:
            note.append(f"ran in {r['ran_in_bytes']} B" + (f", failed in {r['failed_in_bytes']} B"
                                                          if r["failed_in_bytes"] else ""))
        core_name = group(r)
        print(f"  {core_name:<34} {r['model']:<22} {r['generated']:>9,} {r['device_used']:>9,} {r['over']:>+6,}  "
              f"{'; '.join(note)}")
    for core in dict.fromkeys(map(group, rows)):
        mine = [r for r in rows if group(r) == core]
        exact = sum(r["predicted_used"] == r["device_used"] for r in mine if not r["framework"])
        within = [r for r in mine if 0 <= r["over"] <= ARENA_TARGET_OVER]
        peaks = [r for r in mine if r["planning_peak"] and r["over"] > ARENA_TARGET_OVER]
        print(f"  {core}: {len(mine)} models, "
              + (f"arena_used_bytes predicted to the byte on {exact}, " if not mine[0]["framework"] else "")
              + "generated within "
              f"0..+{ARENA_TARGET_OVER} B on {len(within)}, below on {sum(r['over'] < 0 for r in mine)}"
              + (f", above by TFLM's planning peak on {len(peaks)} ({', '.join(r['model'] for r in peaks)})"
                 if peaks else ""))
    for source in dict.fromkeys(f"{r['file']}: {r['source']}" for r in rows):
        print(f"  source {source}")


@task(help={"tflm": "a TFLM source tree with microlite built for the target (TFLM's Makefile, "
                    "BUILD_TYPE=release_with_logs so the per-operator profiler runs)",
            "cost_model": "which cost model to calibrate: cortex-m4f-cmsis-nn (default), cortex-m7-cmsis-nn, "
                          "cortex-m33-nodsp-cmsis-nn or cortex-m0plus-reference",
            "mlperf": "a checkout of github.com/mlcommons/tiny: also time its five int8 reference models (a check)",
            "groups": "comma-separated: grid (the probes the cost model is fitted on), held_out (probes unlike the "
                      "zoo), zoo (width 1.0), mlperf (default: all four)",
            "work": "scratch folder for the builds and images (default build/calibrate)"})
@cli_errors
def calibrate(c, tflm=None, cost_model="cortex-m4f-cmsis-nn", mlperf=None, groups="grid,held_out,zoo,mlperf",
              work="build/calibrate"):
    """Calibrate a cost model under QEMU -icount: fit it on a designed grid of probe models, timed per operator,
    and check it on held-out probes, the zoo and MLPerf Tiny's reference models."""
    tflm_tree = _tflm_tree(tflm)
    from pipeline import calibrate as calibrate_mod

    chosen = tuple(g.strip() for g in groups.split(",") if g.strip())
    path = calibrate_mod.run(tflm_tree, cost_model, Path(work), mlperf=Path(mlperf) if mlperf else None,
                             groups=chosen)
    print(f"cost model written: {path} (measurements: {calibrate_mod.measurements_path(cost_model)})")
    _print_costmodel_check(calibrate_mod.check(cost_model))


def _print_costmodel_check(result: dict) -> None:
    from pipeline.calibrate import MODEL_TOLERANCE, OP_SHARE, OP_TOLERANCE

    print(f"cost model {result['cost_model']} (ESTIMATE) vs QEMU instruction counts ({result['source']}):")
    print(f"  {'group':<9} {'model':<24} {'width':>5} {'measured':>12} {'estimated':>12} {'ratio':>6}  worst operator "
          f"above {OP_SHARE:.0%} of the model (ratio)")
    for t in sorted(result["models"], key=lambda t: ("grid", "held_out", "zoo", "mlperf").index(t["group"])
                    if t["group"] in ("grid", "held_out", "zoo", "mlperf") else 9):
        w = t.get("worst_op")
        worst = f"#{w['index']} {w['cost_class']} ({w['ratio']:.2f})" if w else ""
        width = "" if t["width"] is None else f"{t['width']:g}"
        flag = "" if t["meets"] else "  MISSES"
        print(f"  {t['group']:<9} {t['model']:<24} {width:>5} {t['measured']:>12.0f} {t['estimated']:>12.0f} "
              f"{t['ratio']:>6.3f}  {worst}{flag}")
    print(f"  worst model ratio estimate/measured: {result['worst_ratio']:.3f}; target: every model within "
          f"+-{MODEL_TOLERANCE:.0%}, every operator above {OP_SHARE:.0%} of its model within +-{OP_TOLERANCE:.0%} "
          f"({'met' if result['meets'] else 'NOT met'}; the grid is what the cost model is fitted on, the other "
          "groups are the check)")
    if result.get("mlperf_cpi"):
        m = result["mlperf_cpi"]
        print(f"  NUCLEO-L4R5ZI as the published runs were made ({m['clock_mhz']} MHz): CPI {m['cycles_per_instruction']:g} "
              f"({m['low']:g}-{m['high']:g}): {m['source']}")
    from pipeline.calibrate import MLPERF_L4R5ZI_STACKS

    for row in result.get("mlperf_nucleo_l4r5zi", []):
        print(f"  MLPerf Tiny NUCLEO-L4R5ZI {row['model']:<13} estimate {row['estimated_ms']:>7.1f} ms "
              f"({row['estimated_low_ms']:.1f}-{row['estimated_high_ms']:.1f}) vs {row['published_ms']:>6.1f} ms: ratio "
              f"{row['ratio']:.2f} [{MLPERF_L4R5ZI_STACKS[row['stack']]}]")
    if result.get("per_mhz"):
        print(f"  every board of this core (ESTIMATES; ms x MHz / CPI is the instruction count in thousands and must be "
              f"the same on every board):")
        print(f"  {'board':<18} {'MHz':>5} {'CPI (range)':>18} {'model':<13} {'est. ms (range)':>24} {'ms x MHz':>10} "
              f"{'ms x MHz / CPI':>15}")
        for r in result["per_mhz"]:
            cpi = f"{r['cpi']:g} ({r['cpi_low']:g}-{r['cpi_high']:g})"
            ms = f"{r['estimated_ms']:.1f} ({r['estimated_low_ms']:.1f}-{r['estimated_high_ms']:.1f})"
            print(f"  {r['board']:<18} {r['clock_mhz']:>5} {cpi:>18} {r['model']:<13} {ms:>24} {r['ms_x_mhz']:>10.0f} "
                  f"{r['ms_x_mhz_per_cpi']:>15.0f}")


@task(help={"cost_model": "one cost model to check (default: every one with calibration measurements)"})
@cli_errors
def bench_costmodel(c, cost_model=None):
    """Benchmark: each calibrated cost model vs its QEMU measurements and published MLPerf Tiny figures, and the
    estimate on every board of its core with clock and CPI, so a contradiction between boards shows."""
    from pipeline import calibrate as calibrate_mod

    names = [cost_model] if cost_model else sorted(p.stem for p in calibrate_mod.CALIBRATION_DIR.glob("*.json"))
    if not names:
        raise PipelineError("no calibration measurements in boards/costs/calibration/: run `invoke calibrate` first")
    for name in names:
        _print_costmodel_check(calibrate_mod.check(name))


@task(help={"generated": "a build's generated/ folder (default: the chosen build's generated/)",
            "board": COMMON_HELP["board"],
            "model": "the built model (default: the only, or the most recent, build of the board)",
            "name": "the build folder, build/<board>/NAME/",
            "tflm": "a TFLM source tree with microlite built for the CPU (see README: Without hardware)",
            "cpu": "cortex-m4+fp (mps2-an386, default), cortex-m0plus (ARMv6-M code on mps2-an385), cortex-m7+fp "
                   "(mps2-an500) or cortex-m33+nodsp (mps2-an505)",
            "out": "the image to write (default build/<board>/<name>/qemu-<cpu>.elf)",
            "build_dir": COMMON_HELP["build_dir"]})
@cli_errors
def firmware_qemu(c, tflm=None, board="nucleo-l4r5zi", model=None, generated=None, cpu="cortex-m4+fp", out=None,
                  build_dir="build", name=None):
    """Build the QEMU image of the benchmark harness with the real model, linked with your TFLM library."""
    tflm_tree = _tflm_tree(tflm)
    from pipeline.boards import load_board
    from pipeline.hil.harness_build import QEMU_CPUS, build_qemu_tflm

    board = load_board(board).name
    folder = _chosen_build(build_dir, board, name, (_folder(model) if model else None)).folder
    image = build_qemu_tflm(Path(generated) if generated else folder / "generated", tflm_tree,
                            Path(out) if out else folder / f"qemu-{cpu}.elf", cpu)
    machine = QEMU_CPUS[cpu][1]
    print(f"QEMU image: {image}")
    print(f"run it:     qemu-system-arm -M {machine} -nographic -monitor none -icount shift=0,align=off,sleep=off -kernel {image} "
          "-serial tcp:127.0.0.1:4444,server=on,wait=off")
    print(f"measure it: invoke measure --board={board} --name={folder.name} --port=socket://127.0.0.1:4444 "
          "(figures labelled QEMU instruction count)")


@task(help={"tflm": "a TFLM source tree with microlite built for the host (TFLM's Makefile, no TARGET)",
            "board": COMMON_HELP["board"],
            "model": "the built model (default: the only, or the most recent, build of the board)",
            "name": "the build folder, build/<board>/NAME/",
            "out": "the program to write (default build/<board>/<name>/host-harness)",
            "build_dir": COMMON_HELP["build_dir"]})
@cli_errors
def firmware_host(c, tflm=None, board="esp32", model=None, out=None, build_dir="build", name=None):
    """Build the host (pseudo-terminal) harness with the real model, linked with your TFLM host library."""
    tflm_tree = _tflm_tree(tflm)
    from pipeline.boards import load_board
    from pipeline.hil.harness_build import build_host_tflm

    board = load_board(board).name
    folder = _chosen_build(build_dir, board, name, (_folder(model) if model else None)).folder
    program = build_host_tflm(folder / "generated", tflm_tree, Path(out) if out else folder / "host-harness")
    print(f"host harness: {program}  (it prints the pseudo-terminal it serves; then invoke measure "
          f"--board={board} --name={folder.name} --port=/dev/pts/N, figures labelled host)")


@task(help={"board": "only this board's runs", "model": "only this model's runs",
            "last": "how many recent runs to list (default 20)", "db": MEASURE_HELP["db"],
            "build_dir": COMMON_HELP["build_dir"]})
@cli_errors
def history(c, board=None, model=None, last="20", db=None, build_dir="build"):
    """The recent measured runs (latency, energy, accuracy, where from) and history.png, latency over time."""
    from pipeline.hil import history as history_mod

    path = Path(db) if db else Path(build_dir) / "hil.sqlite"
    if not path.is_file():
        raise PipelineError(f"no run history at {path}: `invoke measure` stores every run there")
    rows = history_mod.recent(path, board, model, last=_number("last", last, int))
    if not rows:
        print(f"no runs in {path}" + (f" for {board or ''} {model or ''}" if board or model else ""))
        return
    print(f"{'run':>4} {'when':<19} {'board':<14} {'model':<12} {'source':<24} {'latency us':>11} {'energy uJ':>10} "
          f"{'accuracy':>8} {'commit':<12} model hash")
    import datetime as dt

    for r in rows:
        when = dt.datetime.fromtimestamp(r["time"]).strftime("%Y-%m-%d %H:%M:%S")
        energy = "" if r["energy_uj"] is None else f"{r['energy_uj']:.2f}"
        accuracy = "" if r["accuracy"] is None else f"{r['accuracy']:.1f}%"
        print(f"{r['id']:>4} {when:<19} {r['board']:<14} {r['model']:<12} {r['source']:<24} "
              f"{r['latency_median_us']:>11.1f} {energy:>10} {accuracy:>8} {r['git_commit'] or '':<12} "
              f"{r['model_hash'] or ''}")
    plot = history_mod.plot(rows, path.with_name("history.png"))
    print(f"plot: {plot}")


@task(help={"baud": "the line rate the upload is modelled at, and xbaud switches to (default 921600)",
            "repeats": "uploads of a 96x96x3 input per way on the pty (default 5)",
            "qemu": "also time the uploads over the QEMU Cortex-M4 image's UART (default on; --no-qemu skips it)"})
@cli_errors
def bench_serial(c, baud="921600", repeats="5", qemu=True):
    """Benchmark: input upload, db hex (31 and 38 bytes a command) vs xdb frames, on the pty and the QEMU UART."""
    from pipeline.hil.bench import run_benchmark

    run_benchmark(baud=_number("baud", baud, int), repeats=_number("repeats", repeats, int), qemu=qemu)
