"""`invoke explore`: which model to deploy on this board. A multi-objective search (Optuna) over the model's
search space (models.py: width, depth, pruning kind and amount, QAT or post-training, distillation from the widest
model of the space; for audio data also the audio front end's stride and mel channels, FRONTEND_SPACE, since the
features decide both accuracy and cost), every trial measured on the
same footing: int8 accuracy on the host TFLM runtime, flash and RAM as the fit check counts them, and the board's
latency and energy ESTIMATES (pipeline.target.costmodel).

- Constraints: the board's flash and RAM budgets and the user's limits. An infeasible trial is recorded with why.
- Hopeless trials stop early: when the float model's validation accuracy is already below --min-accuracy (less
  a margin the int8 steps cannot make up), the trial is pruned before pruning, QAT and conversion.
- The study lives in a database (SQLite under build/ by default, or any --storage URL Optuna takes), so an
  interrupted study resumes, and several processes or machines can work on one study: a running trial beats a
  heartbeat into the database; a trial whose worker died (no beat for twice --heartbeat) is marked failed and run
  again, with the same configuration, by another worker. --trials counts the trials that finished (complete, or
  pruned as hopeless or unbuildable), never a failed one, and a worker takes a new trial only while the study needs
  one (a lock in the database, or beside the SQLite file, makes that check and the take one step), so the study
  ends with exactly --trials of them however many workers share it.
- Every trial goes through the stage cache: a repeated configuration trains nothing.
"""
from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import html
import io
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline import boards
from pipeline.target import fit
from pipeline.model import user_model, zoo
from pipeline.cache import write_atomic
from pipeline.errors import PipelineError

OBJECTIVES = ("accuracy", "latency", "ram", "flash", "energy")
HOPELESS_MARGIN = 5.0  # points: a float model this far below --min-accuracy will not make it after int8
FILES = ("trials.json", "trials.csv", "pareto.json", "pareto.png", "report.html")


@dataclass
class ExploreOptions:
    model: str = "digits"
    board: str = "esp32"
    data: str | None = None
    trials: int = 30
    objectives: tuple[str, ...] = ("accuracy", "latency", "ram")
    max_latency_ms: float | None = None
    max_ram_kb: float | None = None
    max_flash_kb: float | None = None
    min_accuracy: float | None = None
    epochs: int | None = None
    seed: int = 0
    storage: str | None = None  # an Optuna storage URL; default sqlite under the explore folder
    build_root: Path = Path("build")
    measure: str | None = None  # measure the Pareto trials: "emulate", or the board's serial port (flashed first)
    heartbeat: int = 30  # seconds between a running trial's heartbeats; silent for twice this = its worker died
    trust_model: bool = False  # a user's model file may run code it carries

    @property
    def model_name(self) -> str:
        """A zoo model's name or a user model file's stem (its build folder)."""
        return user_model.folder_name(self.model)

    @property
    def out_dir(self) -> Path:
        return self.build_root / self.board_name / self.model_name / "explore"

    @property
    def board_name(self) -> str:
        return boards.load_board(self.board).name

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out_dir / 'study.sqlite3').resolve()}"

    @property
    def storage_label(self) -> str:
        """The storage URL as printed and written to files: without its password."""
        import sqlalchemy

        try:
            return sqlalchemy.engine.make_url(self.storage_url).render_as_string(hide_password=True)
        except sqlalchemy.exc.ArgumentError:
            return self.storage_url

    @property
    def study_name(self) -> str:
        return f"{self.model_name}@{self.board_name}"


def check_options(opts: ExploreOptions) -> zoo.ModelSpec:
    spec = user_model.resolve(opts.model, opts.data, opts.seed, opts.trust_model)
    if opts.trials < 1:
        raise PipelineError(f"--trials must be at least 1 (got {opts.trials})")
    if opts.heartbeat < 1:
        raise PipelineError(f"--heartbeat must be at least 1 second (got {opts.heartbeat})")
    unknown = [o for o in opts.objectives if o not in OBJECTIVES]
    if unknown or "accuracy" not in opts.objectives or len(set(opts.objectives)) != len(opts.objectives):
        raise PipelineError(f"--objectives must list accuracy and any of {', '.join(OBJECTIVES[1:])}, each once "
                            f"(got {','.join(opts.objectives)})")
    for name in ("max_latency_ms", "max_ram_kb", "max_flash_kb"):
        value = getattr(opts, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise PipelineError(f"--{name.replace('_', '-')} must be a positive number (got {value})")
    if opts.min_accuracy is not None:
        if spec.task != "classification":
            raise PipelineError(f"--min-accuracy applies to classifiers; {opts.model} is a regression model (its "
                                "metric is an error): leave it out")
        if not (math.isfinite(opts.min_accuracy) and 0 < opts.min_accuracy <= 100):
            raise PipelineError(f"--min-accuracy is a percentage, above 0 and at most 100 (got {opts.min_accuracy})")
    if opts.epochs is not None and opts.epochs < 1:
        raise PipelineError(f"--epochs must be at least 1 (got {opts.epochs})")
    if opts.seed < 0:
        raise PipelineError(f"--seed must not be negative (got {opts.seed})")
    if opts.storage is not None and "://" not in opts.storage:
        raise PipelineError(f"--storage must be a database URL such as sqlite:////path/study.db or "
                            f"postgresql://user@host/db (got {opts.storage!r})")
    if not spec.search:
        raise PipelineError(f"model {opts.model} declares no search space")
    # The data is read once here, so a missing or malformed --data is refused before any trial or output.
    source = opts.data or spec.default_data
    if source is None:
        raise PipelineError(f"model '{opts.model}' has no bundled dataset: pass --data=FILE.npz or --data=FOLDER "
                            f"(input shape {spec.input_shape})")
    from pipeline.model import datasets

    datasets.load(source, spec.input_shape, spec.num_classes, opts.seed, spec.autoencoder, classes_from_data=True)
    return spec


# The audio front end's knobs, searched with the model when the data is audio. Every choice keeps the model's 49 x 10
# input (pipeline.target.frontend.settings_with pools to it): frames every 10 or 20 ms (a 20 ms stride computes half
# the FFTs), 10, 20 or 40 mel channels (averaged down to 10).
FRONTEND_SPACE = {"stride_ms": (10, 20), "mel_channels": (10, 20, 40)}


def is_audio(opts: ExploreOptions, spec: zoo.ModelSpec) -> bool:
    from pipeline.model import audio

    source = opts.data or spec.default_data
    return source is not None and audio.is_audio(source)


def sample(trial, spec: zoo.ModelSpec, audio: bool = False) -> dict:
    """One configuration from the model's search space (steps keep repeated configurations cache hits); with
    audio data, the front end's settings too (params["frontend"], --frontend's text)."""
    space = spec.search
    params = {"width": 1.0, "depth": None}  # a model file has neither knob: the rest of the space applies
    if "width" in spec.knobs and "width" in space:
        low, high = space["width"]
        params["width"] = trial.suggest_float("width", low, high, step=0.25)
    if "depth" in spec.knobs:
        low, high = space.get("depth", spec.depth_range)
        params["depth"] = trial.suggest_int("depth", low, high)
    params["prune"] = trial.suggest_categorical("prune", list(space["prune"]))
    low, high = space["sparsity"]
    sparsity = trial.suggest_float("sparsity", low, high, step=0.1)
    params["sparsity"] = 0.0 if params["prune"] == "none" else round(sparsity, 2)
    params["qat"] = trial.suggest_categorical("qat", [True, False])
    # Distillation from the widest model of the space (trained once, through the stage cache), classifiers only.
    if spec.pretrained:  # a model file with weights: the model as brought teaches its pruned self
        distill = (spec.task == "classification" and params["prune"] != "none"
                   and trial.suggest_categorical("distill", [False, True]))
        params["teacher"] = "brought" if distill else None
    else:
        distill = (spec.task == "classification" and "width" in spec.knobs
                   and trial.suggest_categorical("distill", [False, True]))
        params["teacher"] = f"{space['width'][1]:g}" if distill else None
    params["precision"] = trial.suggest_categorical("precision", list(space.get("precision", ("int8",))))
    if audio:
        from pipeline.target import frontend

        chosen = frontend.settings_with(
            stride_ms=trial.suggest_categorical("fe_stride_ms", list(FRONTEND_SPACE["stride_ms"])),
            mel_channels=trial.suggest_categorical("fe_mel_channels", list(FRONTEND_SPACE["mel_channels"])))
        params["frontend"] = chosen.describe()
    return params


def teacher_text(teacher: str | None) -> str:
    """A trial's teacher as a reader knows it: "teacher width 2.0" (a wider model of the space) or its file name."""
    if not teacher:
        return ""
    try:
        return f"teacher width {float(teacher):.1f}"
    except ValueError:
        return f"teacher {Path(teacher).name}"


def describe(params: dict | None) -> str:
    """One trial's configuration in words, e.g. "width 0.5, depth 2, structured pruning 0.3, QAT, teacher width 2.0,
    int8"."""
    if not params:
        return "-"
    parts = [f"width {params['width']:g}", f"depth {params['depth']}"]
    parts.append("no pruning" if params["prune"] == "none" else f"{params['prune']} pruning {params['sparsity']:g}")
    parts.append("QAT" if params["qat"] else "post-training quantization")
    if params.get("teacher"):
        parts.append(teacher_text(params["teacher"]))
    precision = params.get("precision", "int8")
    parts.append(precision if precision == "int8" else f"{precision} ({HOST_ONLY})")
    if params.get("frontend"):
        parts.append(f"front end {params['frontend']}")
    return ", ".join(parts)


# Trials of another precision than int8: measured on the host TFLM runtime (accuracy, arena, size), but no firmware is
# built for them and no cost model covers their 16-bit kernels, so they get no latency or energy estimate.
HOST_ONLY = "host only, not buildable"


def pipeline_options(opts: ExploreOptions, params: dict):
    """The build options of one trial (and of `invoke build --from-explore`)."""
    from pipeline.build import Options

    return Options(model=opts.model, board=opts.board, data=opts.data, epochs=opts.epochs, seed=opts.seed,
                   width=params["width"], depth=params["depth"], sparsity=params["sparsity"],
                   prune="magnitude" if params["prune"] == "none" else params["prune"], qat=params["qat"],
                   teacher=params.get("teacher"), precision=params.get("precision", "int8"), build_root=opts.build_root,
                   max_drop=100.0, compile_firmware=False, trust_model=opts.trust_model, frontend=params.get("frontend"))


class Hopeless(Exception):
    pass


def evaluate(opts: ExploreOptions, params: dict, board: boards.Board) -> dict:
    """Train (or reuse), optimize, convert and validate one configuration; its figures on the board."""
    from pipeline.build import Pipeline

    p = Pipeline(pipeline_options(opts, params), log=lambda _: None)
    if opts.min_accuracy is not None and p.spec.task == "classification":
        trained = p.train()
        if 100.0 * trained["val_metric"] < opts.min_accuracy - HOPELESS_MARGIN:
            raise Hopeless(f"float validation accuracy {100 * trained['val_metric']:.1f}% is hopeless for "
                           f"--min-accuracy {opts.min_accuracy}")
    metrics = p.validate()
    figures = p.device_figures(board, p.tflite_path)
    info = p.model_info(firmware=False)
    sample_bytes = int(math.prod(info.inputs[0].shape[1:])) * (2 if params.get("precision") == "int16x8" else 1)
    fitted = fit.check(board, figures["tflite_bytes"], figures["arena_bytes"], sample_bytes, figures["ops"])
    latency_us = figures["latency_estimate_us"]
    host_only = params.get("precision", "int8") != "int8"
    audio = {}
    if p.frontend_settings is not None:
        # A keyword from one second of audio: the front end over the window plus one inference (both ESTIMATES).
        from pipeline.target import costmodel, profile

        row = profile.frontend_row(p.frontend(), board, costmodel.for_board(board).cpi_for(board).value, latency_us)
        audio = {"model_latency_ms": latency_us / 1000.0, "frontend_ms": row["est_us"] / 1000.0,
                 "frontend_source": row["source"]}
        latency_us += row["est_us"]
    energy_uj = board.active_power_mw * latency_us / 1000.0 if board.active_power_mw else None
    return {**audio,
        "metric_name": metrics["metric_name"], "accuracy": metrics["tflm_metric"],
        "float_metric": metrics["float_metric"],
        # The cost model is of the board's int8 kernels: for an int16x8 model it would give the int8 figure.
        "latency_ms": None if host_only else latency_us / 1000.0, "energy_uj": None if host_only else energy_uj,
        "host_only": f"{params['precision']}: {HOST_ONLY} (no firmware or cost model for its kernels yet)"
                     if host_only else None,
        # Only what the study's sampler is steered by where there is no estimate (never reported as a latency).
        "sampler_latency_ms": latency_us / 1000.0, "sampler_energy_uj": energy_uj,
        "ram_kb": fitted.ram_bytes / 1024, "flash_kb": fitted.flash_bytes / 1024, "arena_bytes": figures["arena_bytes"],
        "tflite_bytes": figures["tflite_bytes"], "macs": figures["macs"], "fits_board": fitted.fits,
        "ram_budget_kb": board.ram_bytes / 1024, "flash_budget_kb": board.flash_bytes / 1024,
    }


def violations(opts: ExploreOptions, m: dict) -> dict[str, float]:
    """Each limit as `value - limit` (feasible when <= 0), named; the board budget always counts."""
    limits = {"ram_kb": m["ram_budget_kb"], "flash_kb": m["flash_budget_kb"]}
    if opts.max_ram_kb is not None:
        limits["ram_kb"] = min(limits["ram_kb"], opts.max_ram_kb)
    if opts.max_flash_kb is not None:
        limits["flash_kb"] = min(limits["flash_kb"], opts.max_flash_kb)
    found = {key: m[key] - limit for key, limit in limits.items()}
    if opts.max_latency_ms is not None:
        if m.get("latency_ms") is None:  # host only: nothing shows it meets the limit
            found["latency_unknown"] = 1.0
        else:
            found["latency_ms"] = m["latency_ms"] - opts.max_latency_ms
    if opts.min_accuracy is not None and m["metric_name"] == "accuracy":
        found["accuracy"] = opts.min_accuracy - m["accuracy"]
    return found


def why_infeasible(v: dict[str, float]) -> list[str]:
    units = {"ram_kb": "KiB of RAM", "flash_kb": "KiB of flash", "latency_ms": "ms of latency",
             "accuracy": "accuracy points"}
    return [f"no latency estimate ({HOST_ONLY}) to hold to the latency limit" if key == "latency_unknown" else
            f"{value:.2f} {units[key]} over the limit" for key, value in v.items() if value > 0]


OBJECTIVE_KEYS = {"latency": "latency_ms", "ram": "ram_kb", "flash": "flash_kb", "energy": "energy_uj"}


def objective_values(opts: ExploreOptions, m: dict) -> list[float]:
    """What the sampler minimises; a host-only trial, which has no latency or energy estimate, steers it by its
    int8 kernels' figure (kept out of every output)."""
    def value(o):
        if o == "accuracy":
            return m["accuracy"]
        key = OBJECTIVE_KEYS[o]
        return m[key] if m.get(key) is not None else m.get(f"sampler_{key}")
    return [value(o) for o in opts.objectives]


def directions(opts: ExploreOptions, spec: zoo.ModelSpec) -> list[str]:
    """Accuracy up (a regression model's MAE down); every cost down."""
    first = "maximize" if spec.task == "classification" else "minimize"
    return [first if o == "accuracy" else "minimize" for o in opts.objectives]


@dataclass
class Progress:
    total: int
    start: float = field(default_factory=time.monotonic)
    done_here: int = 0


COUNTED = ("COMPLETE", "PRUNED")  # trials --trials counts: finished with figures, or stopped with a reason


def run(opts: ExploreOptions, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the study until it holds --trials finished trials, then write the outputs."""
    import optuna
    import sqlalchemy

    from pipeline.model import train

    spec = check_options(opts)
    board = boards.load_board(opts.board)
    if "energy" in opts.objectives and not board.active_power_mw:
        raise PipelineError(f"board {board.name} has no [power] active_mw: energy cannot be an objective")
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train.QUIET = True

    study = open_study(opts, directions(opts, spec))
    stored = study.user_attrs.get("objectives")
    if stored and tuple(stored) != tuple(opts.objectives):
        raise PipelineError(f"study {opts.study_name} was started with --objectives={','.join(stored)}: resume it "
                            "with the same, or start another with --storage")
    study.set_user_attr("objectives", list(opts.objectives))
    already = sum(t.state.name in COUNTED for t in study.get_trials(deepcopy=False))
    if already:
        log(f"explore: resuming study {opts.study_name} ({already} of {opts.trials} trials done) in "
            f"{opts.storage_label}")
    progress = Progress(max(0, opts.trials - already))

    def objective(trial, params):
        try:
            m = evaluate(opts, params, board)
        except Hopeless as exc:
            trial.set_user_attr("why", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except PipelineError as exc:  # e.g. a depth whose feature map vanishes: recorded, the study goes on
            trial.set_user_attr("why", str(exc))
            trial.set_constraint("error", 1.0)
            raise optuna.TrialPruned(str(exc)) from None
        v = violations(opts, m)
        values = objective_values(opts, m)
        m = {key: value for key, value in m.items() if not key.startswith("sampler_")}
        trial.set_user_attr("metrics", m)
        for key, value in v.items():  # <= 0 is feasible; Optuna's samplers steer away from the rest
            trial.set_constraint(key, value)
        trial.set_user_attr("why", "; ".join(why_infeasible(v)))
        return values

    def report(trial):
        progress.done_here += 1
        done = sum(t.state.name in COUNTED for t in study.get_trials(deepcopy=False))
        elapsed = time.monotonic() - progress.start
        left = max(0, opts.trials - done)
        eta = elapsed / progress.done_here * left
        m = trial.user_attrs.get("metrics")
        latency = (f"{m['latency_ms']:.2f} ms (estimate)" if m.get("latency_ms") is not None
                   else f"no latency estimate ({HOST_ONLY})") if m else ""
        what = (f"{m['metric_name']} {m['accuracy']:.2f}, {latency}, RAM {m['ram_kb']:.1f} KiB, "
                f"flash {m['flash_kb']:.1f} KiB" if m else trial.user_attrs.get("why", trial.state.name.lower()))
        feasible = m is not None and not trial.user_attrs.get("why")
        best = pick(collect(study, opts), "best")
        best_text = (f"best feasible #{best['number']}: {best['metrics']['accuracy']:.2f} at "
                     f"{best['metrics']['latency_ms']:.2f} ms" if best else "no feasible trial yet")
        log(f"trial {trial.number}: {'feasible' if feasible else 'INFEASIBLE' if m else trial.state.name.lower()} "
            f"({describe(trial.user_attrs.get('params'))}) -> {what} | {done}/{opts.trials} done, {best_text} | "
            f"elapsed {elapsed:.0f} s, ETA {eta:.0f} s")

    if progress.total:
        log(f"explore {opts.model} on {board.name}: {progress.total} trials to run, objectives "
            f"{', '.join(opts.objectives)} (latency/energy are ESTIMATES from the board's cost model)")
        claim = ClaimLock(opts.storage_url, opts.study_name)
        if not claim.exact:
            log(f"explore: {opts.storage_label.split(':')[0]} storage has no lock here: workers that take their "
                "last trials at the same moment may run a few more than --trials")
        try:
            with claim:
                fail_stale_trials(study)
                for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                    # One beat for each trial still running: a live worker beats on anyway, and one left without
                    # any heartbeat (its worker died before its first beat) becomes stale too, and is run again.
                    study._storage.record_heartbeat(t._trial_id)
            while (trial := next_trial(study, opts, claim, log)) is not None:
                frozen = run_trial(study, trial, spec, objective, log, is_audio(opts, spec))
                if frozen is not None:
                    report(frozen)
        except sqlalchemy.exc.OperationalError as exc:
            raise PipelineError(f"the study's database {opts.storage_label} failed: {first_line(exc)}; the finished "
                                "trials are kept there: run the same command again to resume") from None
    rows = collect(study, opts)
    if opts.measure:
        measure_front(opts, board, pareto(rows, opts.objectives), log)
    return write_outputs(opts, board, rows)


def next_trial(study, opts: ExploreOptions, claim: "ClaimLock", log: Callable[[str], None]):
    """The next trial this worker runs, or None once the study holds --trials counted trials. Under the claim lock:
    fail the trials of dead workers (their retry is queued with the same configuration), count, and take a trial
    only while finished + running + queued ones fall short of --trials; else wait for the other workers' trials."""
    import optuna

    waiting_for = None
    while True:
        with claim:
            fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state.name in COUNTED for t in trials)
            running = [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
            queued = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
            if done >= opts.trials:
                return None
            if queued or done + len(running) < opts.trials:
                # The sampler reads the trials' constraints. Its seed moves on with the trials in the study, so a
                # resumed study, or another worker, does not replay the random start-up configurations.
                study.sampler = optuna.samplers.TPESampler(seed=opts.seed + 7919 * len(trials), multivariate=True)
                with warnings.catch_warnings():  # "heartbeat is meant for Study.optimize": run_trial beats it
                    warnings.simplefilter("ignore", UserWarning)
                    trial = study.ask()  # a queued (retried) trial first
                study._storage.record_heartbeat(trial._trial_id)  # stale from now on if its worker dies
                return trial
        if running != waiting_for:
            waiting_for = running
            log(f"explore: {done} of {opts.trials} trials done, waiting for trial(s) "
                f"{', '.join(map(str, running))} of other workers (a trial whose worker sends no heartbeat for "
                f"{2 * opts.heartbeat} s is failed and run again)")
        time.sleep(opts.heartbeat)


def fail_stale_trials(study) -> None:
    """Optuna's: the running trials without a heartbeat for the grace period are failed, and queued again."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def run_trial(study, trial, spec: zoo.ModelSpec, objective, log: Callable[[str], None], audio: bool = False):
    """Sample, evaluate and tell one trial while a thread beats its heartbeat into the study's database. Returns the
    finished trial, or None when another worker failed it meanwhile (no heartbeat reached the database in time)."""
    import optuna
    from optuna.storages._heartbeat import get_heartbeat_thread

    state = optuna.trial.TrialState
    with get_heartbeat_thread(trial._trial_id, study._storage):
        try:
            retry_of = study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
            params = sample(trial, spec, audio)
            trial.set_user_attr("params", params)
            log(f"trial {trial.number}: started ({describe(params)})"
                + (f" (retry of trial {retry_of}, whose worker stopped)" if retry_of is not None else ""))
            values, outcome = objective(trial, params), state.COMPLETE
        except optuna.TrialPruned:
            values, outcome = None, state.PRUNED
        except BaseException:  # a bug, or Ctrl-C: the trial is failed, not counted, and the worker stops
            study.tell(trial, state=state.FAIL, skip_if_finished=True)
            raise
    try:
        frozen = study.tell(trial, values, outcome, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:  # failed by another worker between the check and the write
        frozen = study._storage.get_trial(trial._trial_id)
    if frozen.state != outcome:
        log(f"trial {trial.number}: another worker found it without a heartbeat and failed it; its retry runs it "
            "again (raise --heartbeat on a machine this loaded)")
        return None
    return frozen


class ClaimLock:
    """Held while a worker checks whether the study needs another trial and takes it, so that workers never take
    more than --trials needs between them: PostgreSQL's advisory lock (per study; released by the server if the
    worker dies), or an flock on a file beside an SQLite database (released by the kernel). Other databases run
    without it (`exact` is False)."""

    def __init__(self, url: str, study_name: str):
        import sqlalchemy

        parsed = sqlalchemy.engine.make_url(url)
        backend = parsed.get_backend_name()
        self._engine = self._file = self._conn = self._path = None
        self.exact = backend in ("sqlite", "postgresql")
        if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
            self._path = Path(parsed.database + ".lock")
        elif backend == "postgresql":
            self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
            digest = hashlib.sha256(f"mcu-deploy explore {study_name}".encode()).digest()
            self._key = int.from_bytes(digest[:8], "big", signed=True)

    def __enter__(self):
        import fcntl

        import sqlalchemy

        if self._path is not None:
            self._file = open(self._path, "a")
            fcntl.flock(self._file, fcntl.LOCK_EX)
        elif self._engine is not None:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
        return self

    def __exit__(self, *exc):
        import sqlalchemy

        if self._file is not None:
            self._file.close()  # closing the file releases the flock
            self._file = None
        if self._conn is not None:
            try:
                self._conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            finally:
                self._conn.close()  # closing the session releases its locks anyway
                self._conn = None
        return False


def measure_front(opts: ExploreOptions, board: boards.Board, front: list[dict], log: Callable[[str], None]) -> None:
    """Build each Pareto trial and measure it with `invoke measure`: on an emulated device (--measure=emulate), or on
    the board at --measure=PORT after flashing its firmware. Each figure keeps the label of where it came from."""
    from dataclasses import replace

    from pipeline.build import Pipeline
    from pipeline.hil import flash as flash_mod
    from pipeline.hil.emulate import Serving, device_for_build
    from pipeline.hil.measure import MeasureOptions
    from pipeline.hil.measure import measure as run_measure

    emulate = opts.measure == "emulate"
    for row in front:
        params = row["params"]
        if not buildable(row):
            row["measured"] = {"skipped": f"no firmware for {params['precision']} models yet"}
            log(f"measure: Pareto trial #{row['number']} skipped ({row['measured']['skipped']})")
            continue
        folder = opts.out_dir / "measure" / f"trial-{row['number']}"
        log(f"measure: Pareto trial #{row['number']} on {'an emulated ' + board.name if emulate else opts.measure} ...")
        p = Pipeline(replace(pipeline_options(opts, params), board_dir=folder, compile_firmware=not emulate),
                     log=lambda _: None)
        outcome = p.run_board(with_firmware=not emulate)
        options = MeasureOptions(board=opts.board, model=opts.model, data=opts.data, seed=opts.seed, runs=5,
                                 inputs=20, build_dir=opts.build_root, build_folder=folder, out_dir=folder / "measure")
        if emulate:
            with Serving(device_for_build(opts.build_root, board, opts.model, folder)) as port:
                result = run_measure(replace(options, port=port), log=lambda _: None)
        else:
            firmware = outcome.report["firmware"] or {}
            if not firmware.get("compiled"):
                raise PipelineError(f"--measure={opts.measure} needs compiled firmware for trial #{row['number']}: "
                                    f"{firmware.get('message')}")
            flash_mod.flash(board, Path(firmware["project_dir"]), opts.measure)
            result = run_measure(replace(options, port=opts.measure), log=lambda _: None)
        row["measured"] = {"latency_ms": result["latency_us"]["median"] / 1000.0, "source": result["source"],
                           "accuracy": result["accuracy"], "energy_uj": result["energy_uj"]}
        log(f"  #{row['number']}: {row['measured']['latency_ms']:.3f} ms ({result['source']}) vs "
            f"{row['metrics']['latency_ms']:.3f} ms estimated")


def storage(url: str, heartbeat: int = 30):
    """Optuna's RDB storage; an SQLite file waits up to a minute for another worker's write instead of failing. A
    running trial records a heartbeat every `heartbeat` seconds; one silent for twice that is failed by the next
    worker that looks, and queued again with the same configuration (up to 3 times)."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():  # heartbeats and retries are marked experimental (in Optuna since 2.8)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))


def open_study(opts: ExploreOptions, dirs: list[str]):
    """Create or load the study. Two workers starting at once may race to create it (or the tables that hold it):
    the loser loads it."""
    import optuna
    import sqlalchemy

    # SQLite: workers create the tables and the study one at a time, under the lock file beside the database that
    # they take trials under (racing there made a loaded machine's workers give up as "busy").
    creation = (ClaimLock(opts.storage_url, opts.study_name) if opts.storage_url.startswith("sqlite")
                else contextlib.nullcontext())
    last = None
    for attempt in range(8):
        try:
            with creation:
                return optuna.create_study(study_name=opts.study_name,
                                           storage=storage(opts.storage_url, opts.heartbeat),
                                           load_if_exists=True, directions=dirs)
        except ValueError as exc:  # the stored study has other directions (other --objectives)
            raise PipelineError(f"study {opts.study_name} in {opts.storage_label} exists with other objectives: "
                                f"{exc}; use the same --objectives or another --storage") from None
        except sqlalchemy.exc.OperationalError as exc:
            if "locked" not in str(exc):  # an unreachable server, a wrong user or database: no point waiting
                raise PipelineError(f"cannot open study {opts.study_name} in {opts.storage_label}: {first_line(exc)}; "
                                    "check the --storage URL and that the database server runs") from None
            last = exc
            time.sleep(0.5 * (attempt + 1))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                optuna.exceptions.DuplicatedStudyError) as exc:
            last = exc
            time.sleep(0.5 * (attempt + 1))
    raise PipelineError(f"cannot open study {opts.study_name} in {opts.storage_label}: the database stayed busy "
                        f"({first_line(last)})")


def first_line(exc: Exception) -> str:
    """A database error's own message, first line (SQLAlchemy wraps the driver's and appends the SQL)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def collect(study, opts: ExploreOptions) -> list[dict]:
    import optuna

    rows = []
    trials = study.get_trials(deepcopy=False)
    retried_as = {t.system_attrs["retry_history"][-1]: t.number for t in trials if t.system_attrs.get("retry_history")}
    for t in trials:
        if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
            continue
        m = t.user_attrs.get("metrics") if t.state != optuna.trial.TrialState.FAIL else None
        # Feasibility under this run's limits (a resumed study may have been given other ones).
        why = "; ".join(why_infeasible(violations(opts, m))) if m else t.user_attrs.get("why", "")
        if t.state == optuna.trial.TrialState.FAIL:
            why = "failed: its worker stopped" + (f"; run again as trial {retried_as[t.number]}"
                                                  if t.number in retried_as else "")
        rows.append({"number": t.number, "state": t.state.name.lower(), "params": t.user_attrs.get("params"),
                     "metrics": m, "feasible": bool(m) and not why and t.state == optuna.trial.TrialState.COMPLETE,
                     "why": why or None})
    return rows


def pareto(rows: list[dict], objectives: tuple[str, ...], maximize_accuracy: bool = True) -> list[dict]:
    """The feasible trials firmware can be built for that no other such trial beats on every objective (host-only
    trials have no latency to compare)."""
    feasible = [r for r in rows if r["feasible"] and buildable(r)]

    def values(r):
        m = r["metrics"]
        out = []
        for o in objectives:
            if o == "accuracy":
                out.append(-m["accuracy"] if maximize_accuracy else m["accuracy"])
            else:
                out.append(m[OBJECTIVE_KEYS[o]])
        return out

    front = []
    for r in feasible:
        a = values(r)
        dominated = any(all(x <= y for x, y in zip(values(o), a)) and values(o) != a for o in feasible if o is not r)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r["metrics"]["latency_ms"])


def buildable(row: dict) -> bool:
    """Firmware can be built for it (int16x8 models are measured on the host only, for now)."""
    return (row.get("params") or {}).get("precision", "int8") == "int8"


def pick(rows: list[dict], which: str) -> dict | None:
    """`best`: the most accurate feasible trial that firmware can be built for, ties broken by latency; or a trial
    number."""
    if which == "best":
        feasible = [r for r in rows if r["feasible"] and buildable(r)]
        if not feasible:
            return None
        higher = feasible[0]["metrics"]["metric_name"] == "accuracy"
        return min(feasible, key=lambda r: ((-1 if higher else 1) * r["metrics"]["accuracy"],
                                            r["metrics"]["latency_ms"]))
    for r in rows:
        if str(r["number"]) == str(which):
            return r
    return None


def load_trials(out_dir: Path) -> list[dict]:
    path = out_dir / "trials.json"
    if not path.is_file():
        raise PipelineError(f"no explore results in {out_dir}: run `invoke explore` first")
    return json.loads(path.read_text())["trials"]


# -- outputs -------------------------------------------------------------------------------------------------
def write_outputs(opts: ExploreOptions, board: boards.Board, rows: list[dict]) -> dict:
    out = opts.out_dir
    front = pareto(rows, opts.objectives, maximize_accuracy=True)
    best = pick(rows, "best")
    summary = {"model": opts.model, "board": board.name, "objectives": list(opts.objectives),
               "limits": {"max_latency_ms": opts.max_latency_ms, "max_ram_kb": opts.max_ram_kb,
                          "max_flash_kb": opts.max_flash_kb, "min_accuracy": opts.min_accuracy,
                          "board_ram_kb": board.ram_bytes / 1024, "board_flash_kb": board.flash_bytes / 1024},
               "storage": opts.storage_label, "label": "latency and energy are ESTIMATES (cost model)",
               "trials": rows}
    write_atomic(out / "trials.json", json.dumps(summary, indent=2))
    write_atomic(out / "trials.csv", _csv(rows))
    write_atomic(out / "pareto.json", json.dumps({"objectives": list(opts.objectives), "pareto": front,
                                                  "best": best}, indent=2))
    png = _plot(opts, board, rows, front, best)
    write_atomic(out / "pareto.png", png)
    write_atomic(out / "report.html", _html(opts, board, rows, front, best, png))
    return {"trials": rows, "pareto": front, "best": best, "out_dir": str(out)}


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    metric_keys = ["accuracy", "float_metric", "latency_ms", "energy_uj", "ram_kb", "flash_kb", "arena_bytes",
                   "tflite_bytes", "macs"]
    metric_keys += ["model_latency_ms", "frontend_ms"]  # audio data: latency_ms is the two together
    fields = ["number", "state", "feasible", "width", "depth", "prune", "sparsity", "qat", "teacher", "precision",
              "frontend", *metric_keys, "why"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        row = {"number": r["number"], "state": r["state"], "feasible": r["feasible"], "why": r["why"] or ""}
        row.update(r["params"] or {})
        row.update({k: (r["metrics"] or {}).get(k) for k in metric_keys})
        writer.writerow(row)
    return buf.getvalue()


def _axis_range(values: list[float], limit: float | None) -> tuple[tuple[float, float], str | None]:
    """The x range of one panel, zoomed to its points, and how its limit is marked: "line" where it falls inside
    (or close to) the points' range, "note" where drawing it would squash the points into a corner, None without
    one."""
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 0.5)
    lo, hi = lo - pad, hi + pad
    if limit is None:
        return (lo, hi), None
    if limit <= hi + (hi - lo):  # within one more range width: draw it and show it
        return (min(lo, limit - pad), max(hi, limit + pad)), "line"
    return (lo, hi), "note"


def _figure(opts, board, rows, front, best):
    """The three panels of pareto.png (accuracy against latency, RAM and flash), as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r["metrics"]]
    units = {"latency_ms": "ms", "ram_kb": "KiB", "flash_kb": "KiB"}
    panels = [("latency_ms", "latency (ms, ESTIMATE)", opts.max_latency_ms, "limit"),
              ("ram_kb", "RAM (KiB: arena + input + runtime)", min(v for v in (board.ram_bytes / 1024, opts.max_ram_kb)
                                                                     if v is not None), "budget"),
              ("flash_kb", "flash (KiB: model + runtime)", min(v for v in (board.flash_bytes / 1024, opts.max_flash_kb)
                                                                if v is not None), "budget")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    metric = measured[0]["metrics"]["metric_name"] if measured else "accuracy"
    for ax, (key, label, limit, kind) in zip(axes, panels):
        plotted = [r for r in measured if r["metrics"].get(key) is not None]
        groups = [("infeasible", [r for r in plotted if not r["feasible"]], dict(c="lightgray", s=25)),
                  ("feasible", [r for r in plotted if r["feasible"] and buildable(r)], dict(c="tab:blue", s=25)),
                  (f"int16x8: {HOST_ONLY}", [r for r in plotted if r["feasible"] and not buildable(r)],
                   dict(marker="D", facecolors="none", edgecolors="tab:purple", s=30))]
        for name, group, style in groups:
            if group:  # a legend entry only for what is drawn
                ax.scatter([r["metrics"][key] for r in group], [r["metrics"]["accuracy"] for r in group],
                           label=name, **style)
        line = sorted(front, key=lambda r: r["metrics"][key])
        if line:
            ax.plot([r["metrics"][key] for r in line], [r["metrics"]["accuracy"] for r in line], "-o", c="tab:orange",
                    label="Pareto front", ms=6)
        for r in line:
            ax.annotate(f"#{r['number']}", (r["metrics"][key], r["metrics"]["accuracy"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        if best:
            ax.scatter([best["metrics"][key]], [best["metrics"]["accuracy"]], marker="*", s=220, c="tab:red",
                       label=f"pick #{best['number']}", zorder=5)
        xs = [r["metrics"][key] for r in plotted]
        timed = [r for r in front if (r.get("measured") or {}).get("latency_ms") is not None]
        if key == "latency_ms" and timed:
            sources = sorted({r["measured"]["source"] for r in timed})
            ax.scatter([r["measured"]["latency_ms"] for r in timed], [r["metrics"]["accuracy"] for r in timed],
                       marker="x", s=60, c="black", label=f"measured ({', '.join(sources)})", zorder=6)
            xs += [r["measured"]["latency_ms"] for r in timed]
        unestimated = len(measured) - len(plotted)
        if unestimated:
            ax.text(0.01, 0.01, f"{unestimated} trial(s) not shown: {HOST_ONLY}, no estimate", fontsize=7,
                    transform=ax.transAxes, color="tab:purple")
        (lo, hi), mark = _axis_range(xs, limit)
        ax.set_xlim(lo, hi)
        if mark == "line":
            ax.axvline(limit, color="tab:red", linestyle="--", label=f"{kind} {limit:g} {units[key]}")
        elif mark == "note":  # off the scale: an arrow at the right edge says where it is
            ax.annotate(f"{kind} {limit:g} {units[key]} →", xy=(1.0, 1.01), xycoords="axes fraction", ha="right",
                        va="bottom", fontsize=8, color="tab:red")
        ax.set_xlabel(label)
        ax.set_ylabel(f"{metric} (int8, TFLM host)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{opts.model} on {board.name}: {len(measured)} trials, {len(front)} on the Pareto front")
    fig.tight_layout()
    return fig


def _plot(opts, board, rows, front, best) -> bytes:
    import matplotlib.pyplot as plt

    fig = _figure(opts, board, rows, front, best)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _html(opts, board, rows, front, best, png: bytes) -> str:
    esc = html.escape

    def feasibility(r):
        if not r["feasible"]:
            return esc(r["why"] or r["state"])
        return "yes" if buildable(r) else f"yes, but {esc(HOST_ONLY)}: no latency estimate"

    def table(items, title):
        head = ("<tr><th>#</th><th>width</th><th>depth</th><th>prune</th><th>sparsity</th><th>QAT</th><th>teacher</th><th>precision</th><th>front end</th>"
                "<th>metric</th><th>latency ms (est.)</th><th>energy uJ (est.)</th><th>RAM KiB</th><th>flash KiB</th>"
                "<th>MACs</th><th>feasible / why not</th></tr>")
        body = []
        for r in items:
            p, m = r["params"] or {}, r["metrics"] or {}

            def num(key, fmt):
                return "" if m.get(key) is None else format(m[key], fmt)

            cls = ' class="pick"' if best and r["number"] == best["number"] else ""
            body.append(f"<tr{cls}><td>{r['number']}</td><td>{p.get('width', '')}</td><td>{p.get('depth', '')}</td>"
                        f"<td>{esc(str(p.get('prune', '')))}</td><td>{p.get('sparsity', '')}</td>"
                        f"<td>{p.get('qat', '')}</td><td>{esc(teacher_text(p.get('teacher')))}</td>"
                        f"<td>{esc(str(p.get('precision', 'int8')))}</td><td>{esc(str(p.get('frontend') or ''))}</td>"
                        f"<td>{num('accuracy', '.2f')}</td><td>{num('latency_ms', '.3f')}</td>"
                        f"<td>{num('energy_uj', '.1f')}</td><td>{num('ram_kb', '.1f')}</td>"
                        f"<td>{num('flash_kb', '.1f')}</td><td>{num('macs', 'd')}</td>"
                        f"<td>{feasibility(r)}</td></tr>")
        return f"<h2>{esc(title)}</h2><table>{head}{''.join(body)}</table>"

    limits = ", ".join(f"{k} {v}" for k, v in (("max latency ms", opts.max_latency_ms), ("max RAM KiB", opts.max_ram_kb),
                                               ("max flash KiB", opts.max_flash_kb),
                                               ("min accuracy", opts.min_accuracy)) if v is not None) or "none"
    if best:
        m = best["metrics"]
        why = (f"Trial #{best['number']} is the most accurate feasible trial with firmware support ({m['metric_name']} "
               f"{m['accuracy']:.2f}, ties broken by latency; int16x8 trials run on the host only for now): {m['latency_ms']:.3f} ms estimated, RAM {m['ram_kb']:.1f} of "
               f"{m['ram_budget_kb']:.0f} KiB, flash {m['flash_kb']:.1f} of {m['flash_budget_kb']:.0f} KiB. "
               f"Build it with <code>invoke build --board={esc(board.name)} --model={esc(opts.model)} "
               f"--from-explore=best</code>.")
    else:
        why = "No trial is feasible: relax a limit or widen the search."
    image = base64.b64encode(png).decode()
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}tr.pick{background:#ffe9a8}"
             "img{max-width:100%}.note{color:#555}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>explore {esc(opts.model)} on "
            f"{esc(board.name)}</title><style>{style}</style></head><body>"
            f"<h1>Which {esc(opts.model)} to deploy on {esc(board.name)}</h1>"
            f"<p class='note'>{len(rows)} trials; objectives: {esc(', '.join(opts.objectives))}; limits: {esc(limits)}; "
            f"board budget RAM {board.ram_bytes / 1024:.0f} KiB, flash {board.flash_bytes / 1024:.0f} KiB. Accuracy is "
            "the int8 model on the TFLM host runtime; latency and energy are ESTIMATES from the board's cost model; "
            "RAM and flash are counted as the fit check counts them."
            + (" The data is audio: a trial's latency is the front end over a one-second window plus one inference "
               "(model_latency_ms and frontend_ms apart in trials.csv), its front end one of the searched settings."
               if any((r.get("params") or {}).get("frontend") for r in rows) else "") + "</p>"
            f"<h2>The pick</h2><p id='pick'>{why}</p>"
            f"<img alt='Pareto front' src='data:image/png;base64,{image}'>"
            f"{table(front, 'Pareto front')}{table(rows, 'All trials')}</body></html>")
