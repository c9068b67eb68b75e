"""The pipeline: train -> optimize (prune + QAT) -> convert -> validate -> generate -> fit -> firmware.

Board-independent stages live in build/_models/<model>/, board stages in build/<board>/<model>/, where the
report, the .tflite, the generated sources and the firmware project end up. Every stage is keyed by a hash
of its inputs, parameters and code (pipeline.cache), so a rebuild runs only what changed and a rebuild with
nothing changed never imports TensorFlow.
"""
from __future__ import annotations

import functools
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.target import arena as arena_mod
from pipeline import boards, buildfolder, cache
from pipeline.firmware import codegen, projects
from pipeline.model import datasets, user_model, validate
from pipeline.target import fit, graph, kernels, memplan, tflite_model
from pipeline.errors import PipelineError
from pipeline.report import findings as findings_mod
from pipeline.report.findings import Limits

PIPELINE_DIR = Path(__file__).resolve().parent
STAGES = ("train", "optimize", "convert", "validate", "generate", "fit", "profile", "firmware")
MODELS_SUBDIR = "_models"
PRUNE_KINDS = ("magnitude", "structured")
# --teacher=brought: a pretrained model file teaches its own pruned and fine-tuned self (distillation while the
# pruning fine-tunes), with the model as brought as the teacher.
BROUGHT_TEACHER = "brought"


@dataclass
class Options:
    model: str = "digits"
    board: str = "esp32"
    data: str | None = None  # a bundled dataset name or a path; None means the model's own
    epochs: int | None = None  # None means the model's default
    sparsity: float = 0.5
    qat: bool = True
    seed: int = 0
    max_drop: float = 2.0
    width: float = 1.0
    depth: int | None = None  # number of blocks; None means the model's default
    prune: str = "magnitude"  # "magnitude" (zeros single weights) or "structured" (removes whole channels)
    memory_plan: str = "offline"  # "offline": a plan embedded in the model where it beats TFLM's; "tflm": TFLM's own
    # Knowledge distillation: a teacher's outputs guide training. A number is a width of the same zoo model (trained
    # first, through the stage cache); otherwise the path of a Keras .h5 model with the same input and classes.
    teacher: str | None = None
    precision: str = "int8"  # or "int16x8": int16 activations, int8 weights (host TFLM only, no firmware yet)
    board_dir: Path | None = None  # where the board outputs go; default build_root/<board>/<name>
    name: str | None = None  # the build folder's name under build_root/<board>/ (default: the model's name)
    tflite: Path | None = None  # bring your own int8 model: skip train/optimize/convert
    trust_model: bool = False  # a user's model file may run code it carries (Lambda, custom objects)
    build_root: Path = Path("build")
    compile_firmware: bool = True
    limits: Limits = field(default_factory=Limits)  # --max-latency-ms, --max-ram-kb, ... (findings; gates with fail_on)
    fail_on: str | None = None  # "budget": exit non-zero when a budget finding is an error; "warning": on any warning
    elf: Path | None = None  # a firmware image the user built: its real sizes against the fit estimate
    # What the firmware's `profile` reports as m-model-[...]; None: the rule in codegen.model_id (an MLPerf Tiny
    # reference model of the zoo reports its MLPerf id, any other model its name).
    model_id: str | None = None
    energy_mode: bool = False  # the harness serves MLPerf Tiny's energy mode (timestamps on the pin, 9600 baud)
    # The audio front end's settings over its defaults, "KEY=VALUE,..." (pipeline.target.frontend.parse); audio data only.
    frontend: str | None = None


@dataclass
class Outcome:
    report: dict
    report_path: Path | None
    findings: list = field(default_factory=list)  # findings_mod.Finding, most severe first
    page_path: Path | None = None


def _code(*names: str) -> list[Path]:
    """The source files of the named modules (`package/module`), part of a stage's key: a code change reruns it."""
    return [PIPELINE_DIR / f"{n}.py" for n in names]


def _check_options(opts: Options) -> None:
    if not 0.0 <= opts.sparsity < 1.0:
        raise PipelineError(f"--sparsity must be in [0, 1) (got {opts.sparsity})")
    if opts.epochs is not None and opts.epochs < 0:
        raise PipelineError(f"--epochs must be at least 1, or 0 for a model file with trained weights (got {opts.epochs})")
    if opts.width <= 0:
        raise PipelineError(f"--width must be positive (got {opts.width})")
    if opts.max_drop < 0:
        raise PipelineError(f"--max-drop must not be negative (got {opts.max_drop})")
    if opts.depth is not None and opts.depth < 1:
        raise PipelineError(f"--depth must be at least 1 (got {opts.depth})")
    if opts.precision not in ("int8", "int16x8"):
        raise PipelineError(f"--precision must be int8 or int16x8 (got {opts.precision!r})")
    if opts.memory_plan not in ("offline", "tflm"):
        raise PipelineError(f"--memory-plan must be offline or tflm (got {opts.memory_plan!r})")
    if opts.prune not in PRUNE_KINDS:
        raise PipelineError(f"--prune must be one of {', '.join(PRUNE_KINDS)} (got {opts.prune!r})")
    opts.limits.check()
    findings_mod.check_fail_on(opts.fail_on)
    if opts.elf is not None and not Path(opts.elf).is_file():
        raise PipelineError(f"--elf={opts.elf}: no such file (give the firmware image your build wrote, e.g. "
                            "build/zephyr/zephyr.elf or build/<project>.elf)")
    if opts.name is not None:
        buildfolder.check_name("name", opts.name)


def _tidy(method):
    """A refused run leaves no empty folders: those the outermost entry point created are removed on failure."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self._tidying:
            return method(self, *args, **kwargs)
        self._tidying = True
        try:
            with buildfolder.tidy_on_failure(self._folders(), self.opts.build_root):
                return method(self, *args, **kwargs)
        finally:
            self._tidying = False
    return wrapper


class Pipeline:
    def __init__(self, opts: Options, log: Callable[[str], None] = print):
        _check_options(opts)
        self.opts = opts
        self.log = log
        self.byo = opts.tflite is not None
        self.user = not self.byo and user_model.is_user_model(opts.model)  # --model=PATH: the user's own model
        self.spec = None if self.byo else user_model.resolve(opts.model, opts.data, opts.seed, opts.trust_model)
        self.model_name = Path(opts.tflite).stem if self.byo else user_model.folder_name(opts.model)
        if self.user:
            opts = self.opts = self._user_options(opts)
        elif opts.epochs == 0:
            raise PipelineError("--epochs=0 converts a model as it is: only for a model file with trained weights "
                                "(--model=FILE.keras or .h5)")
        self.model_id = codegen.model_id(self.model_name, opts.model_id, zoo_model=not self.byo and not self.user)
        self.data_source = opts.data or (self.spec.default_data if self.spec else None)
        if self.spec and self.data_source is None:
            raise PipelineError(
                f"model '{opts.model}' has no bundled dataset: pass --data=FILE.npz or --data=FOLDER "
                f"(input shape {self.spec.input_shape})"
            )
        self.frontend_settings = self._frontend_settings(opts)
        self.epochs = opts.epochs if opts.epochs is not None else (self.spec.epochs if self.spec else 0)
        self.qat = opts.qat and not (self.spec and self.spec.qat_unsupported) and opts.precision == "int8"
        if opts.qat and not self.qat and not self.byo:
            why = (self.spec.qat_unsupported if self.spec and self.spec.qat_unsupported
                   else "tfmot's QAT simulates int8 activations, not int16")
            self.log(f"note: QAT skipped for {opts.model} ({why}); converting with post-training quantization instead")
        # Each training configuration and each optimization of it has a folder of its own, so variants (another
        # --width, --prune, --sparsity ...) sit side by side in the stage cache instead of replacing each other.
        depth = "" if opts.depth is None else f"-d{opts.depth}"
        self.self_distill = opts.teacher == BROUGHT_TEACHER
        if self.self_distill and not (self.user and self.spec.pretrained and self.spec.task == "classification"):
            raise PipelineError(f"--teacher={BROUGHT_TEACHER}: the model as brought teaches its pruned self: only for "
                                "a classifier model file with trained weights")
        distill = "" if not opts.teacher or self.self_distill else \
            "-kd" + hashlib.sha256(str(opts.teacher).encode()).hexdigest()[:8]
        cache_name = user_model.cache_name(opts.model) if self.user else self.model_name
        # another front end trains another model: side by side with the default's, named by its settings' hash
        fe = "" if self.frontend_settings is None or self.frontend_settings.is_default else \
            "-fe" + hashlib.sha256(self.frontend_settings.describe().encode()).hexdigest()[:8]
        self.train_dir = opts.build_root / MODELS_SUBDIR / cache_name / (
            f"w{opts.width:g}{depth}-e{self.epochs}-seed{opts.seed}{distill}{fe}")
        self.model_dir = self.train_dir / (f"{opts.prune}{opts.sparsity:g}-{'qat' if self.qat else 'ptq'}"
                                           + ("" if opts.precision == "int8" else f"-{opts.precision}")
                                           + ("-kd" if self.self_distill else ""))
        self._data = None
        self._fingerprint = None
        self._tidying = False
        self.stage_seconds: dict[str, float] = {}
        self.cached: list[str] = []
        self.results: dict[str, dict] = {}

    def _user_options(self, opts: Options) -> Options:
        """A user model's options, checked against what it declares; --epochs=0 converts a pretrained file as is."""
        from dataclasses import replace

        name = Path(opts.model).name
        if opts.width != 1.0 and "width" not in self.spec.knobs:
            raise PipelineError(f"--width: {name} has no width knob (a builder .py whose build_model takes width has)")
        if opts.depth is not None and "depth" not in self.spec.knobs:
            raise PipelineError(f"--depth: {name} has no depth knob (a builder .py whose build_model takes depth has)")
        if opts.epochs == 0:
            if not self.spec.pretrained:
                raise PipelineError(f"--epochs=0 converts a model as it is, and {name} brings no trained weights: "
                                    "give --epochs to train it")
            if opts.sparsity or opts.qat:
                self.log(f"note: --epochs=0: {name} is converted as brought (post-training int8: no pruning, no QAT)")
            opts = replace(opts, sparsity=0.0, qat=False)
        if self.spec.pretrained:
            self.log(f"{name}: {self.spec.description} with trained weights: kept, fine-tuned for "
                     f"{self.spec.epochs if opts.epochs is None else opts.epochs} epochs by pruning and QAT")
        return opts

    def _frontend_settings(self, opts: Options):
        """The audio front end's settings (pipeline.target.frontend) when the data is audio, else None; --frontend
        with data that is not audio is refused."""
        from pipeline.model import audio
        from pipeline.target import frontend

        if self.byo or self.data_source is None or not audio.is_audio(self.data_source):
            if opts.frontend:
                raise PipelineError(f"--frontend={opts.frontend}: the audio front end's settings are for audio data "
                                    "(--data=a folder of .wav class folders or an .npz of int16 audio)"
                                    + (" and a model trained here, not --tflite" if self.byo else ""))
            return None
        return frontend.parse(opts.frontend)

    # -- helpers ---------------------------------------------------------------------------------------
    def fingerprint(self) -> str | None:
        if self._fingerprint is None and self.data_source is not None:
            self._fingerprint = datasets.fingerprint(self.data_source, self.opts.seed, self.frontend_settings)
        return self._fingerprint

    def frontend(self) -> dict | None:
        """The audio front end's settings when the data is audio (part of the data fingerprint, so of every key)."""
        return None if self.frontend_settings is None else self.frontend_settings.as_dict()

    def data(self, input_shape=None, num_classes=None, autoencoder=False) -> datasets.Dataset:
        if self._data is None:
            if self.spec:
                input_shape, num_classes, autoencoder = self.spec.input_shape, self.spec.num_classes, self.spec.autoencoder
            # A zoo model's output layer is sized to the data's classes; a brought model's outputs are fixed.
            self._data = datasets.load(self.data_source, input_shape, num_classes, self.opts.seed, autoencoder,
                                       classes_from_data=self.spec is not None and not self.spec.source, log=self.log,
                                       frontend_settings=self.frontend_settings)
        return self._data

    def stage(self, index: int, name: str, out_dir: Path, key: str, outputs: list[Path], fn: Callable[[], dict]) -> dict:
        self.log(f"[{index}/{len(STAGES)}] {name} ...")
        out_dir.mkdir(parents=True, exist_ok=True)
        run = cache.run_stage(out_dir, name, key, outputs, fn, log=self.log)
        self.stage_seconds[name] = round(run.seconds, 3)
        if run.cached:
            self.cached.append(name)
            self.log(f"[{index}/{len(STAGES)}] {name}: up to date")
        else:
            self.log(f"[{index}/{len(STAGES)}] {name}: done in {run.seconds:.1f} s")
        self.results[name] = run.result
        return run.result

    @property
    def float_path(self) -> Path:
        return self.train_dir / "float.h5"

    @property
    def optimized_path(self) -> Path:
        return self.model_dir / "optimized.h5"

    @property
    def tflite_path(self) -> Path:
        return Path(self.opts.tflite) if self.byo else self.model_dir / "model.tflite"

    # -- model stages ----------------------------------------------------------------------------------
    @_tidy
    def train(self) -> dict:
        from pipeline.model import train as train_mod

        params = {"model": self.model_name, "width": self.opts.width, "epochs": self.epochs,
                  "seed": self.opts.seed, "data": self.fingerprint()}
        if self.opts.depth is not None:
            params["depth"] = self.opts.depth
        if self.user:  # keyed on the file's content (and whether it may run code), not its name
            params.update(source=user_model.digest(self.opts.model), trust=self.opts.trust_model)
        teacher = self.teacher_path()
        key = cache.stage_key("train", params, [teacher] if teacher else [],
                              _code("model/train", "model/zoo", "model/datasets", "model/user_model", "model/keras_bridge",
                                    "model/audio", "target/frontend"))
        return self.stage(1, "train", self.train_dir, key, [self.float_path], lambda: asdict(
            train_mod.train(self.spec, self.data(), self.opts.width, self.epochs, self.opts.seed, self.float_path,
                            self.opts.depth, teacher)))

    def teacher_path(self) -> Path | None:
        """The teacher's float model: a wider one of the same zoo model (trained first), or the user's .h5."""
        if not self.opts.teacher or self.self_distill:  # the brought model teaches in the optimize stage
            return None
        if self.spec.task != "classification":
            raise PipelineError(f"--teacher: distillation needs a classifier; {self.model_name} is a regression model")
        try:
            width = float(self.opts.teacher)
            if self.user and "width" not in self.spec.knobs:
                raise PipelineError(f"--teacher={self.opts.teacher}: {Path(self.opts.model).name} has no width knob; "
                                    "give a teacher .h5 path")
        except ValueError:
            path = Path(self.opts.teacher)
            if path.suffix != ".h5" or not path.is_file():
                raise PipelineError(f"--teacher={self.opts.teacher}: give a width of {self.model_name} (e.g. 2.0) or "
                                    "the path of a Keras .h5 model") from None
            return path
        from dataclasses import replace

        if width <= 0:
            raise PipelineError(f"--teacher width must be positive (got {width})")
        self.log(f"teacher: {self.model_name} at width {width:g} ...")
        teacher = Pipeline(replace(self.opts, width=width, depth=None, teacher=None),
                           log=lambda line: self.log("  teacher " + line))
        teacher.train()
        return teacher.float_path

    @_tidy
    def optimize(self) -> dict:
        from pipeline.model import optimize as optimize_mod

        self.train()
        params = {"sparsity": self.opts.sparsity, "qat": self.qat, "epochs": self.epochs, "seed": self.opts.seed,
                  "prune": self.opts.prune, "self_distill": self.self_distill}
        key = cache.stage_key("optimize", params, [self.float_path],
                              _code("model/optimize", "model/structured", "model/train"))
        return self.stage(2, "optimize", self.model_dir, key, [self.optimized_path], lambda: asdict(
            optimize_mod.optimize(self.float_path, self.optimized_path, self.spec, self.data(), self.opts.sparsity,
                                  self.qat, self.epochs, self.opts.seed, self.opts.prune,
                                  self.float_path if self.self_distill else None)))

    @_tidy
    def convert(self) -> dict:
        from pipeline.model import convert as convert_mod

        self.optimize()
        key = cache.stage_key("convert", {"seed": self.opts.seed, "data": self.fingerprint(),
                                          "precision": self.opts.precision},
                              [self.optimized_path, self.float_path], _code("model/convert", "target/tflite_model"))
        return self.stage(3, "convert", self.model_dir, key, [self.tflite_path], lambda: asdict(
            convert_mod.convert(self.optimized_path, self.float_path, self.data(), self.opts.seed, self.tflite_path,
                                self.opts.precision)))

    def model_info_precision_check(self) -> None:
        raise PipelineError(f"firmware for {self.opts.precision} models is not generated yet (the harness and the "
                            "generated sources take int8 input and output): measure it with `invoke profile` or "
                            "`invoke explore`, or build with --precision=int8")

    def model_info(self, firmware: bool = True) -> tflite_model.TFLiteModel:
        """The model, checked: int8 end to end for the firmware; int16x8 too where only the host runs it."""
        info = tflite_model.read(self.tflite_path)
        if firmware and tflite_model.precision(info) == "int16x8":
            self.model_info_precision_check()
        tflite_model.require_full_integer(info, ("INT8", "INT16") if not firmware else ("INT8",))
        return info

    @_tidy
    def validate(self) -> dict | None:
        if not self.byo:
            self.convert()
        if self.data_source is None:  # a brought model without --data: nothing to measure accuracy on
            self.log(f"[4/{len(STAGES)}] validate: skipped (pass --data to measure int8 and TFLM accuracy)")
            return None
        info = self.model_info(firmware=False)
        float_path = None if self.byo else self.float_path
        inputs = [self.tflite_path] + ([float_path] if float_path else [])
        key = cache.stage_key("validate", {"data": self.fingerprint()}, inputs, _code("model/validate", "target/arena",
                                                                                                   "target/mcu_arena"))

        def run():
            out_size = int(np.prod(info.outputs[0].shape))
            data = self.data(tuple(info.inputs[0].shape[1:]), out_size if out_size > 1 else None)
            return asdict(validate.validate(self.tflite_path, float_path, data, info.inputs[0], info.outputs[0]))

        result = self.stage(4, "validate", self.model_dir, key, [self.tflite_path], run)
        metrics = validate.Metrics(**result)
        if metrics.float_metric is not None:
            self.data()  # the drop for regression is relative to the test targets' range
            validate.check_drop(metrics, self.opts.max_drop, self._data.y_test)
        return result

    # -- board stages ----------------------------------------------------------------------------------
    def sample(self, info: tflite_model.TFLiteModel, arena_bytes: int) -> codegen.Sample:
        """The first test example (or the input zero point without data) and the host TFLM output for it, run in the
        measured arena."""
        inp = info.inputs[0]
        if self.data_source is not None:
            out_size = int(np.prod(info.outputs[0].shape))
            data = self.data(tuple(inp.shape[1:]), out_size if out_size > 1 else None)
            x_q = validate.quantize(data.x_test[:1], inp)
            label = data.labels[int(data.y_test[0])] if data.task == "classification" else None
        else:
            x_q = np.full([1] + inp.shape[1:], inp.zero_point, dtype=np.int8)
            label = None
        expected = validate.run_tflm(info.path.read_bytes(), x_q, arena_bytes)
        return codegen.Sample(x_q[0], expected[0], label)

    def labels(self, info: tflite_model.TFLiteModel) -> list[str]:
        if self.data_source is not None and self._data is not None:
            return list(self._data.labels)
        return [str(i) for i in range(int(np.prod(info.outputs[0].shape)))]

    def op_order(self, model_bytes: bytes, host: "arena_mod.ArenaResult", inputs: Callable[[], np.ndarray]):
        """The model with its operators in the topological order of the lowest activation peak
        (pipeline.target.oporder), where that makes the host's arena smaller and the outputs stay bit-identical on
        `inputs()`; else the model as it is."""
        from pipeline.target import oporder

        found = oporder.best_order_of(model_bytes)
        report = {"changed": False, "peak_bytes": found.original_peak_bytes,
                  "searched_peak_bytes": found.peak_bytes}
        if not found.changed:
            return model_bytes, host, report
        reordered = oporder.reorder(model_bytes, found.order)
        reordered_host = arena_mod.measure(reordered)
        if reordered_host.measured_bytes >= host.measured_bytes:
            report["kept"] = (f"the reordered model needs {reordered_host.measured_bytes:,} B on the host, not less "
                              f"than {host.measured_bytes:,} B")
            return model_bytes, host, report
        x_q = inputs()
        same = np.array_equal(validate.run_tflm(model_bytes, x_q, host.measured_bytes),
                              validate.run_tflm(reordered, x_q, reordered_host.measured_bytes))
        if not same:  # cannot happen for a deterministic runtime; kept as the promise's check
            report["kept"] = "the reordered model's outputs differ on the sample input"
            return model_bytes, host, report
        self.log(f"  operator order: {found.original_peak_bytes:,} -> {found.peak_bytes:,} B of activations alive at "
                 f"the peak; host arena {host.measured_bytes:,} -> {reordered_host.measured_bytes:,} B (outputs "
                 "bit-identical on the sample input)")
        report.update({"changed": True, "order": found.order, "host_bytes_before": host.measured_bytes,
                       "host_bytes_after": reordered_host.measured_bytes})
        return reordered, reordered_host, report

    def deployed_tflite(self, board_dir: Path) -> Path:
        """The model the board's firmware holds (operators reordered, a memory plan embedded), once generated."""
        path = board_dir / "model.tflite"
        return path if path.is_file() else self.tflite_path

    def generate(self, board: boards.Board, board_dir: Path) -> dict:
        info = self.model_info()
        generated = board_dir / "generated"
        key = cache.stage_key("generate", {"model": self.model_name, "data": self.fingerprint(),
                                           "kernels": board.kernels, "target": kernels.target_of(board),
                                           "memory_plan": self.opts.memory_plan, "model_id": self.model_id,
                                           "framework": board.framework},
                              [self.tflite_path], _code("firmware/codegen", "target/arena", "target/mcu_arena",
                                                        "target/tflm_ops", "target/tflite_model", "target/graph",
                                                        "target/kernels", "target/memplan", "target/oporder"))

        def run():
            codegen.resolver_methods(info)  # name an op TFLM lacks before TFLM itself fails on it
            original = self.tflite_path.read_bytes()
            host = arena_mod.measure(original)
            original, host, order_report = self.op_order(
                original, host, lambda: self.sample(info, host.measured_bytes).input_q[np.newaxis])
            model_graph = graph.from_bytes(original)
            final, plan_report = original, {"requested": self.opts.memory_plan, "used": "tflm",
                                            "tflm_head_bytes": host.head_bytes, "tflm_total_bytes": host.measured_bytes}
            if self.opts.memory_plan == "offline":
                plan = memplan.plan(model_graph)
                planned = memplan.embed(original, plan, len(model_graph.tensors))
                planned_host = arena_mod.measure(planned)
                plan_report.update({"lower_bound_bytes": plan.lower_bound, "offline_head_bytes": plan.head_bytes,
                                    "offline_total_bytes": planned_host.measured_bytes, "strategy": plan.strategy})
                if planned_host.measured_bytes < host.measured_bytes:  # only where it is really smaller
                    final, host = planned, planned_host
                    plan_report["used"] = "offline"
            model_path = board_dir / "model.tflite"
            cache.write_atomic(model_path, final)
            final_info = tflite_model.read(model_path)
            scratch = kernels.scratch(model_graph, board)
            where = (f"#{scratch.max_op} {model_graph.ops[scratch.max_op].kind}"
                     if scratch.max_op is not None else None)
            layout = arena_mod.model_layout(final)
            margin = scratch.margin_bytes + arena_mod.framework_margin(board.framework, len(layout.ops))
            measured = arena_mod.for_board(host, layout, scratch.per_op, scratch.kernels, scratch.max_bytes, where,
                                           margin)
            sample = self.sample(final_info, measured.measured_bytes)  # a host run: the host's (64-bit) need
            result = codegen.generate(final_info, self.model_name, measured.arena_bytes, self.labels(final_info),
                                      sample, generated, model_id=self.model_id, frontend=self.frontend())
            return {"arena": asdict(measured), "files": result.files, "ops": result.ops, "memory_plan": plan_report,
                    "op_order": order_report,
                    "model_hash": result.model_hash, "sample_bytes": int(sample.input_q.size),
                    "labels": self.labels(final_info)}

        return self.stage(5, "generate", board_dir, key, [generated / f for f in codegen.GENERATED_FILES]
                          + [board_dir / "model.tflite"], run)

    def fit(self, board: boards.Board, generated: dict) -> fit.FitResult:
        self.log(f"[6/{len(STAGES)}] fit ...")
        start = time.perf_counter()
        info = self.model_info()
        result = fit.check(board, info.size_bytes, generated["arena"]["arena_bytes"], generated["sample_bytes"],
                           generated["ops"])
        self.stage_seconds["fit"] = round(time.perf_counter() - start, 3)
        self.log(f"[6/{len(STAGES)}] fit: flash {fit.kib(result.flash_bytes)} of {fit.kib(result.flash_budget)} "
                 f"({result.flash_percent:.1f}%), RAM {fit.kib(result.ram_bytes)} of {fit.kib(result.ram_budget)} "
                 f"({result.ram_percent:.1f}%)")
        return result

    @property
    def quant_debug_path(self) -> Path:
        return self.model_dir / "quant_debug.json"

    def quant_debug(self) -> dict:
        """Per-layer int8 error of the float model (TFLite's quantization debugger), kept beside the model."""
        from pipeline.model import quant_debug

        key = cache.stage_key("quant_debug", {"data": self.fingerprint()}, [self.float_path], _code("model/quant_debug"))

        def run():
            errors = quant_debug.layer_errors(self.float_path, self.data())
            cache.write_atomic(self.quant_debug_path, json.dumps(errors, indent=1))
            return {"layers": len(errors)}

        self.log("quantization debugger (per-layer int8 error) ...")
        return cache.run_stage(self.model_dir, "quant_debug", key, [self.quant_debug_path], run).result

    def profile(self, board: boards.Board, board_dir: Path) -> dict:
        """Per-layer cost on the board (estimates) and what sets the peak arena: profile.json/.csv/.md/.png."""
        from pipeline.target import costmodel, profile as profile_mod

        cost_file = costmodel.for_board(board).path
        errors = self.quant_debug_path if not self.byo and self.quant_debug_path.is_file() else None
        key = cache.stage_key("profile", {"model": self.model_name, "board": board.name, "kernels": board.kernels,
                                          "frontend": self.frontend()},
                              [self.deployed_tflite(board_dir), cost_file] + ([board.source] if board.source else [])
                              + ([errors] if errors else []), _code("target/profile", "target/costmodel", "target/graph", "target/kernels",
                                                                      "target/frontend"))

        def run():
            layer_errors = json.loads(errors.read_text()) if errors else None
            result = profile_mod.build(graph.read(self.deployed_tflite(board_dir)), board, self.model_name, layer_errors,
                                       self.frontend())
            profile_mod.write(result, board_dir)
            return asdict(result)

        return self.stage(7, "profile", board_dir, key, [board_dir / f for f in profile_mod.FILES], run)

    def firmware(self, board: boards.Board, board_dir: Path, generated_result: dict) -> dict:
        framework = projects.framework_for(board)
        if framework is None:
            self.log(f"[8/{len(STAGES)}] firmware: no project renderer for framework '{board.framework}' yet; "
                     f"add the files in {board_dir / 'generated'} and firmware/common/ to your project")
            return asdict(projects.FirmwareResult(board.framework, None, False, None, "no renderer for this framework"))
        project = board_dir / "firmware"
        generated = board_dir / "generated"
        inputs = [generated / f for f in codegen.GENERATED_FILES] + framework.template_files()
        if board.source:
            inputs.append(board.source)
        key = cache.stage_key("firmware", {"board": board.name, "library": self.library_name,
                                           "energy_mode": self.opts.energy_mode}, inputs,
                              _code("firmware/projects", "firmware/library", "firmware/codegen"))

        def run():
            projects.render(board, generated, project, generated_result["sample_bytes"], self.library_name,
                            self.opts.energy_mode)
            return {"project_dir": str(project)}

        self.stage(8, "firmware", board_dir, key, [project / "CMakeLists.txt"], run)
        if not self.opts.compile_firmware:
            result = projects.FirmwareResult(framework.name, str(project), False,
                                             " ".join(framework.build_command(project, board)), "compile skipped")
        else:
            result = projects.compile_project(board, project, self.log)
            self.log(f"[8/{len(STAGES)}] firmware: {result.message}")
        if board.qemu_machine and framework.name == "zephyr":
            self.log(f"[8/{len(STAGES)}] firmware: run it under QEMU (once built): qemu-system-arm -M "
                     f"{board.qemu_machine} -icount shift=0 -nographic -monitor none -kernel "
                     f"{project / 'build' / 'zephyr' / 'zephyr.elf'} -serial tcp::4321,server,nowait; then "
                     f"invoke measure --board={board.name} --port=socket://localhost:4321")
        compiled = project / projects.COMPILED
        if "firmware" not in self.cached and not result.compiled and compiled.exists():
            # Kept across the re-render so a compile is incremental; not compiled now, it is an image of the old
            # sources, which `invoke flash` would flash.
            shutil.rmtree(compiled)
            self.log(f"[8/{len(STAGES)}] firmware: removed {compiled}, compiled from the sources before this render "
                     "(compile the project again)")
        return asdict(result)

    # -- entry points ----------------------------------------------------------------------------------
    def board_dir(self, board: boards.Board) -> Path:
        return self.opts.board_dir or self.opts.build_root / board.name / (self.opts.name or self.model_name)

    def _folders(self) -> list[Path]:
        """The folders this pipeline's stages write to (tidied when a refused run created them)."""
        folders = [self.model_dir, self.train_dir]
        try:
            folders.append(self.board_dir(boards.load_board(self.opts.board)))
        except PipelineError:
            pass
        return folders

    def holds(self, board: boards.Board, board_dir: Path) -> buildfolder.Holds:
        """What this pipeline puts in the board's build folder: the model and the options that made it."""
        o = self.opts
        if self.byo:
            return buildfolder.Holds(board_dir, board_dir.name, board.name, self.model_name, "tflite",
                                     {"tflite": str(Path(o.tflite).resolve())})
        variant = {"width": o.width, "depth": o.depth, "prune": o.prune, "sparsity": o.sparsity, "qat": self.qat,
                   "precision": o.precision, "teacher": o.teacher, "epochs": self.epochs, "seed": o.seed,
                   "data": o.data, "memory_plan": o.memory_plan}
        if self.user:  # the user's file, by path and content: another file of the same stem is another variant
            variant.update(file=str(Path(o.model).resolve()), file_sha256=user_model.digest(o.model))
            return buildfolder.Holds(board_dir, board_dir.name, board.name, self.model_name, "file", variant)
        return buildfolder.Holds(board_dir, board_dir.name, board.name, self.model_name, "zoo", variant)

    def enter_folder(self, board: boards.Board, board_dir: Path) -> tuple[buildfolder.Holds, buildfolder.Holds | None]:
        """Say which build folder this run acts on, and when it replaces another variant there."""
        new, old = self.holds(board, board_dir), buildfolder.read(board_dir)
        self.log(f"build folder: {board_dir} ({self.model_name} on {board.name})")
        if old is not None and not old.same_variant(new):
            self.log(f"note: {board_dir} held {old.describe(new)}; this build replaces it with {new.describe(old)} "
                     f"(to keep both side by side, give each a folder with --name=NAME)")
        return new, old

    def kept_firmware(self, board_dir: Path, model_hash: str) -> dict | None:
        """A run that renders no firmware (generate) keeps the folder's project only where it was rendered for this
        model (and the last report's entry for it); a project rendered for another model is removed, aloud."""
        project = board_dir / "firmware"
        if not project.is_dir():
            return None
        held = projects.model_hash_of(project)
        if held != model_hash:
            shutil.rmtree(project)
            self.log(f"firmware: removed {project}, rendered for model hash {held or 'unknown'} (this build's "
                     f"is {model_hash}); `invoke build` renders it for this model")
            return None
        try:
            last = json.loads((board_dir / "report.json").read_text())
        except (OSError, ValueError):
            return None
        if last.get("model_hash") != model_hash or not last.get("firmware"):
            return None
        return {**last["firmware"], "project_dir": str(project)}

    def drop_stale_harnesses(self, board_dir: Path, model_hash: str) -> None:
        """The host and QEMU harnesses built from an earlier model's generated sources go with it."""
        for harness in [board_dir / "host-harness", *board_dir.glob("qemu-*.elf")]:
            if harness.is_file() and self._stale_harness(harness, model_hash):
                harness.unlink()
                self.log(f"removed {harness}, built for another model; build it again with invoke "
                         f"{'firmware-host' if harness.name == 'host-harness' else 'firmware-qemu'}")

    @staticmethod
    def _stale_harness(path: Path, model_hash: str) -> bool:
        """The harness programs carry the model's MODEL_HASH string; one without this build's is stale."""
        return model_hash.encode() not in path.read_bytes()

    @_tidy
    def run_board(self, with_firmware: bool) -> Outcome:
        board = boards.load_board(self.opts.board)
        if self.opts.precision != "int8":
            self.model_info_precision_check()
        board_dir = self.board_dir(board)
        report_path = board_dir / "report.json"
        holds, _ = self.enter_folder(board, board_dir)
        # The last good report stays until this build succeeds and replaces it atomically: a failed build
        # changes nothing a user relies on. The stages create the folder when their work starts.
        metrics = self.validate()
        generated = self.generate(board, board_dir)
        if not self.byo and self.opts.precision == "int8":  # which layers int8 hurts most: profile and findings
            self.quant_debug()
        fit_result = self.fit(board, generated)
        profile = self.profile(board, board_dir)
        if not fit_result.fits:  # the page and findings show why (report.json stays the last good build's)
            report = self.report(board, metrics, generated, fit_result, None, profile)
            page = self.write_page(board_dir, report, self.findings(report, profile, board_dir))
            try:
                fit.require(fit_result, board, report["tflite_bytes"], report["arena_bytes"])
            except PipelineError as exc:
                raise PipelineError(f"{exc}; see {page}") from None
        firmware_result = self.firmware(board, board_dir, generated) if with_firmware else None
        report = self.report(board, metrics, generated, fit_result, firmware_result, profile)
        report["pruning"] = self.pruning(board, metrics)
        report["distillation"] = self.distillation(metrics)
        if not with_firmware:
            report["firmware"] = self.kept_firmware(board_dir, generated["model_hash"])
        self.drop_stale_harnesses(board_dir, generated["model_hash"])
        if self.opts.elf is not None:
            from pipeline.report import elf

            report["elf_check"] = asdict(elf.check(Path(self.opts.elf), report))
        found = self.findings(report, profile, board_dir)
        report["brought"] = self.brought(metrics)
        cache.write_atomic(report_path, json.dumps(report, indent=2))
        holds.model_hash = generated["model_hash"]
        buildfolder.write(holds)
        page = self.write_page(board_dir, report, found)
        return Outcome(report, report_path, found, page)

    def findings(self, report: dict, profile: dict, board_dir: Path) -> list:
        """Budget gates and what the numbers say, most severe first; findings.json beside report.json."""
        from pipeline.target.graph import read as read_graph

        found = findings_mod.budget_findings(report, self.opts.limits)
        if report.get("elf_check"):
            from pipeline.report import elf

            found += elf.findings(report["elf_check"])
        found += findings_mod.model_findings(report, profile, read_graph(self.deployed_tflite(board_dir)),
                                             None if self.byo else self.opts.sparsity)
        return findings_mod.rank(found)

    def write_page(self, board_dir: Path, report: dict, found: list) -> Path:
        from pipeline.report import page

        findings_mod.write(board_dir / "findings.json", found, {"model": report["model"], "board": report["board"],
                                                               "fail_on": self.opts.fail_on})
        labels = report.get("labels") if report.get("metric") == "accuracy" else None
        return page.write(board_dir, report, found, labels)

    def gate(self, outcome: Outcome) -> None:
        """--fail-on: after the report is written and printed (so CI can read why), an error naming what failed."""
        failed = findings_mod.failed(outcome.findings, self.opts.fail_on)
        if failed:
            raise PipelineError(f"--fail-on={self.opts.fail_on}: " + "; ".join(f.message for f in failed)
                                + f" (see {outcome.page_path} and findings.json)")

    @property
    def library_name(self) -> str:
        """The model library's name, the prefix of its C symbols: the build folder's name (--name) or the model's."""
        from pipeline.firmware import library

        return library.c_name(self.opts.name or self.model_name)

    def export_models(self, also: tuple[str, ...] = ()) -> list:
        """What `export` packages: this build as library `library_name` and `also`, other builds of the same board
        (build/<board>/<NAME>/), each as a library of its folder's name. Refuses a missing one."""
        from pipeline.firmware import export as export_mod, library

        board = boards.load_board(self.opts.board)
        models = [export_mod.ExportModel(self.library_name, self.board_dir(board) / "generated")]
        for other in also:
            folder = self.opts.build_root / board.name / buildfolder.check_name("also", other)
            if not (folder / "generated" / codegen.MODEL_SETTINGS_H).is_file():
                raise PipelineError(f"--also={other}: {folder} holds no generated model; build it first for this "
                                    f"board (invoke generate --board={self.opts.board} --model=... or --tflite=..., "
                                    f"with --name={other} where the model's name is another)")
            models.append(export_mod.ExportModel(library.c_name(other), folder / "generated"))
        return models

    def export(self, models: list, out: Path | None = None, form: str | None = None) -> dict:
        """The models of export_models() as libraries in the board's framework's form (or `form`) with an example
        application (pipeline/firmware/export.py), into `out` (default <build folder>/export/). After run_board."""
        from pipeline.firmware import export as export_mod

        board = boards.load_board(self.opts.board)
        out_dir = out or self.board_dir(board) / "export"
        self.log(f"export: {', '.join(m.name for m in models)} as {export_mod.form_for(board, form).name} libraries "
                 f"into {out_dir} ...")
        return asdict(export_mod.export(board, models, out_dir, form))

    def device_figures(self, board: boards.Board, tflite: Path) -> dict:
        """What a model costs on the board: flash (the .tflite), arena, MACs and the latency estimate."""
        from pipeline.target import costmodel

        model_bytes = tflite.read_bytes()
        host = arena_mod.measure(model_bytes)
        inp = tflite_model.read(tflite).inputs[0]
        model_bytes, host, _ = self.op_order(model_bytes, host,
                                             lambda: np.full([1] + inp.shape[1:], inp.zero_point, np.int8))
        layout = arena_mod.model_layout(model_bytes)
        model_graph = graph.from_bytes(model_bytes)
        scratch = kernels.scratch(model_graph, board)
        margin = scratch.margin_bytes + arena_mod.framework_margin(board.framework, len(layout.ops))
        arena = arena_mod.for_board(host, layout, scratch.per_op, scratch.kernels, margin=margin).arena_bytes
        estimate = costmodel.estimate(model_graph, board)
        return {"tflite_bytes": tflite.stat().st_size, "arena_bytes": arena,
                "ops": sorted({op.kind for op in model_graph.ops}),
                "macs": sum(op.macs for op in model_graph.ops), "latency_estimate_us": round(estimate.latency_us, 1)}

    def pruning(self, board: boards.Board, metrics: dict | None) -> dict | None:
        """What pruning saved on the device, side by side with the same model unpruned (same seed and options)."""
        if self.byo or self.opts.sparsity == 0:
            return None
        if self.opts.prune == "magnitude":
            return {"kind": "magnitude", "sparsity": self.opts.sparsity, "flash_saved_bytes": 0, "macs_saved": 0,
                    "note": "TFLM stores and multiplies the zeroed weights: magnitude pruning saves 0 bytes of flash "
                            "and 0 cycles unless a compressed format is used; --prune=structured removes channels"}
        from dataclasses import replace

        self.log("unpruned baseline, for the comparison (same seed, cached after the first build) ...")
        base = Pipeline(replace(self.opts, sparsity=0.0), log=lambda line: self.log("  baseline " + line))
        base_metrics = base.validate()
        pruned = {**self.device_figures(board, self.tflite_path),
                  "metric": metrics["tflm_metric"] if metrics else None}
        unpruned = {**self.device_figures(board, base.tflite_path),
                    "metric": base_metrics["tflm_metric"] if base_metrics else None}
        saved = {k: round(1 - pruned[k] / unpruned[k], 4) for k in ("tflite_bytes", "arena_bytes", "macs",
                                                                     "latency_estimate_us") if unpruned[k]}
        return {"kind": "structured", "sparsity": self.opts.sparsity, "metric_name": metrics["metric_name"]
                if metrics else None, "pruned": pruned, "unpruned": unpruned, "saved_fraction": saved,
                "channels": {k: self.results.get("optimize", {}).get(k) for k in ("channels_before", "channels_after")}}

    def brought(self, metrics: dict | None) -> dict | None:
        """A user's model: its file, what the bridge did, and the float model as brought beside the int8 result."""
        if not self.user:
            return None
        trained = self.results.get("train") or {}
        bridge = trained.get("bridge") or {}
        return {"file": str(self.opts.model), "description": self.spec.description,
                "pretrained": self.spec.pretrained, "epochs": self.epochs,
                "as_is": self.spec.pretrained and self.epochs == 0,
                "qat": self.qat, "qat_unsupported": self.spec.qat_unsupported,
                "keras_version": bridge.get("keras_version"), "bridge_max_diff": bridge.get("max_diff"),
                "bridge_proof": bridge.get("proof_reference"), "bridge_seconds": bridge.get("bridge_seconds"),
                "metric_name": metrics["metric_name"] if metrics else None,
                "float_as_brought": metrics["float_metric"] if metrics and self.spec.pretrained else None,
                "int8_tflm": metrics["tflm_metric"] if metrics else None,
                "structured_left": (self.results.get("optimize") or {}).get("groups_left")}

    def distillation(self, metrics: dict | None) -> dict | None:
        """The same student trained alone, side by side with the distilled one (same seed and options)."""
        if not self.opts.teacher or self.byo or not metrics:
            return None
        from dataclasses import replace

        from pipeline.model import train as train_mod

        self.log("student trained alone, for the comparison (same seed, cached after the first build) ...")
        alone = Pipeline(replace(self.opts, teacher=None), log=lambda line: self.log("  alone " + line)).validate()
        return {"teacher": self.opts.teacher, "temperature": train_mod.DISTILL_TEMPERATURE,
                "alpha": train_mod.DISTILL_ALPHA, "metric_name": metrics["metric_name"],
                "distilled": {"float": metrics["float_metric"], "tflm": metrics["tflm_metric"]},
                "alone": {"float": alone["float_metric"], "tflm": alone["tflm_metric"]}}

    @_tidy
    def run_profile(self) -> tuple[dict, Path]:
        """The per-layer profile on the board, whether or not the model fits it (that is what it helps decide)."""
        board = boards.load_board(self.opts.board)
        board_dir = self.board_dir(board)
        self.enter_folder(board, board_dir)
        self.validate()
        if self.opts.precision == "int8":  # the firmware inputs too (an int16x8 model has none yet)
            self.generate(board, board_dir)
        if not self.byo:  # which layers int8 hurts most: in this profile and in later builds' profiles
            self.quant_debug()
        return self.profile(board, board_dir), board_dir

    def report(self, board, metrics, generated, fit_result, firmware_result, profile) -> dict:
        info = self.model_info()
        converted = self.results.get("convert", {})
        optimized = self.results.get("optimize", {})
        trained = self.results.get("train", {})
        return {
            "model": self.model_name,
            "model_id": self.model_id,
            "energy_mode": self.opts.energy_mode,
            "board": board.name,
            "metric": metrics["metric_name"] if metrics else None,
            "float_metric": metrics["float_metric"] if metrics else None,
            "int8_metric": metrics["int8_metric"] if metrics else None,
            "tflm_metric": metrics["tflm_metric"] if metrics else None,
            "tflm_vs_tflite_max_output_diff": metrics["max_output_diff"] if metrics else None,
            "test_examples": metrics["test_examples"] if metrics else None,
            "sparsity": round(info.weight_sparsity, 4),
            "sparsity_target": None if self.byo else self.opts.sparsity,
            "qat": None if self.byo else self.qat,
            "width": None if self.byo else self.opts.width,
            "params": trained.get("params"),
            "epochs_run": trained.get("epochs_run"),
            "tflite_bytes": info.size_bytes,
            "float_tflite_bytes": converted.get("float_tflite_bytes"),
            "arena_bytes": generated["arena"]["arena_bytes"],
            "arena_measured_bytes": generated["arena"]["measured_bytes"],
            "arena_host_bytes": generated["arena"]["measured_bytes"],
            "arena_device_used_bytes": generated["arena"].get("device_used_bytes"),
            "arena_device_planning_bytes": generated["arena"].get("device_planning_bytes"),
            "arena_margin_bytes": generated["arena"]["margin_bytes"],
            "arena_kernel_scratch_bytes": generated["arena"]["kernel_scratch_bytes"],
            "memory_plan": generated.get("memory_plan"),
            "op_order": generated.get("op_order"),
            "arena_kernel_scratch_op": generated["arena"]["kernel_scratch_op"],
            "kernels": generated["arena"]["kernels"],
            "ops": generated["ops"],
            "labels": generated.get("labels"),
            "model_hash": generated["model_hash"],
            "flash_bytes": fit_result.flash_bytes,
            "flash_budget_bytes": fit_result.flash_budget,
            "ram_bytes": fit_result.ram_bytes,
            "ram_budget_bytes": fit_result.ram_budget,
            "fits": fit_result.fits,
            "flash_budget_source": board.flash_source, "ram_budget_source": board.ram_source,
            "arena_block_budget_bytes": board.arena_block_bytes,
            "runtime_flash_bytes": fit_result.runtime_flash_bytes, "runtime_ram_bytes": board.runtime_ram_bytes,
            "runtime_source": fit_result.runtime_flash_source,
            "firmware": firmware_result,
            # ESTIMATES from the board's cost model (pipeline.target.costmodel), never measured: labelled so.
            "latency_estimate_us": profile["totals"]["est_us"],
            # the range the CPI rule (or the cost model) leaves open: the same instructions at the low and high CPI
            "latency_estimate_range_us": [profile["totals"]["est_us_low"], profile["totals"]["est_us_high"]],
            "energy_estimate_uj": profile["totals"]["est_energy_uj"],
            "estimate_label": "estimate",
            "clock_mhz": profile["clock_mhz"],
            "cycles_per_instruction": profile["cycles_per_instruction"],
            "cpi_low": profile["cpi_low"], "cpi_high": profile["cpi_high"],
            "cpi_source": profile["cpi_source"],
            "cost_model": profile["cost_model"],
            "cost_model_source": profile["cost_source"],
            "macs": profile["totals"]["macs"],
            "profile_top_latency": profile["top_latency"],
            "profile_peak": profile["peak"],
            "stage_seconds": self.stage_seconds,
            "stages_cached": self.cached,
            "keras_sparsity": optimized.get("keras_sparsity"),
            "audio_frontend": self.frontend(),
            "frontend_estimate": profile.get("frontend"),
        }


def memory_plan_summary(plan: dict | None) -> list[str]:
    """TFLM's own plan of the activations, the lower bound, and the offline plan, and which one the model carries."""
    if not plan or "lower_bound_bytes" not in plan:
        return [] if not plan else ["  memory plan: TFLM's own (--memory-plan=tflm)"]
    gap = plan["offline_head_bytes"] - plan["lower_bound_bytes"]
    where = "at the lower bound" if gap == 0 else f"{gap} bytes above the lower bound"
    used = ("offline plan embedded in the model" if plan["used"] == "offline"
            else "TFLM's own kept (the offline plan is not smaller)")
    return [f"  memory plan: activations {plan['offline_head_bytes']} bytes offline ({where} "
            f"{plan['lower_bound_bytes']}) vs {plan['tflm_head_bytes']} TFLM greedy; total "
            f"{plan['offline_total_bytes']} vs {plan['tflm_total_bytes']}: {used}"]


def pruning_summary(pruning: dict | None, sparsity: float) -> list[str]:
    """What pruning saved on the device, in bytes, MACs and time, not in percent of zeros."""
    if pruning is None:
        return []
    if pruning["kind"] == "magnitude":
        return [f"  pruning (magnitude, weight sparsity {sparsity * 100:.1f}%): saves 0 bytes of flash and 0 cycles "
                "under TFLM (zeros are stored and multiplied); --prune=structured removes whole channels"]
    p, u, s = pruning["pruned"], pruning["unpruned"], pruning["saved_fraction"]
    unit = "%" if pruning["metric_name"] == "accuracy" else ""
    metric = (f"; {pruning['metric_name']} {p['metric']:.4g}{unit} vs {u['metric']:.4g}{unit} unpruned"
              if p["metric"] is not None and u["metric"] is not None else "")
    return [f"  pruning (structured, {pruning['sparsity'] * 100:.0f}% of channels removed) vs the unpruned model: "
            f"flash {p['tflite_bytes']} vs {u['tflite_bytes']} B (-{100 * s['tflite_bytes']:.0f}%), "
            f"arena {p['arena_bytes']} vs {u['arena_bytes']} B (-{100 * s['arena_bytes']:.0f}%), "
            f"MACs {p['macs']} vs {u['macs']} (-{100 * s['macs']:.0f}%), latency estimate "
            f"{p['latency_estimate_us'] / 1000:.3f} vs {u['latency_estimate_us'] / 1000:.3f} ms{metric}"]


def brought_summary(b: dict | None) -> list[str]:
    """Your own model: what it was, what the bridge proved, and the float model as brought beside int8."""
    if not b:
        return []
    what = "pretrained, " + ("converted as brought" if b["as_is"] else f"fine-tuned {b['epochs']} epochs") \
        if b["pretrained"] else f"trained here {b['epochs']} epochs"
    line = f"  your model: {b['description']} ({what}; {'QAT' if b['qat'] else 'post-training int8'}"
    line += f": {b['qat_unsupported']})" if b["qat_unsupported"] else ")"
    if b.get("bridge_max_diff") is not None:
        line += (f"; bridge to tf_keras: max output diff {b['bridge_max_diff']:.2g} vs {b['bridge_proof']}, "
                 f"{b['bridge_seconds']:.1f} s")
    lines = [line]
    if b.get("float_as_brought") is not None and b.get("int8_tflm") is not None:
        unit = "%" if b["metric_name"] == "accuracy" else ""
        lines.append(f"  as brought vs deployed: {b['metric_name']} float {b['float_as_brought']:.4g}{unit} (the "
                     f"model as brought) vs int8 TFLM {b['int8_tflm']:.4g}{unit}")
    if b.get("structured_left"):
        lines.append(f"  structured pruning left alone: {'; '.join(b['structured_left'])}")
    return lines


def summary(report: dict) -> str:
    """The trade-off in numbers, for the end of a build."""
    lines = [f"model {report['model']} on {report['board']}:"]
    if report.get("float_metric") is not None:
        unit = "%" if report["metric"] == "accuracy" else ""
        lines.append(f"  {report['metric']}: float {report['float_metric']:.4g}{unit}, int8 {report['int8_metric']:.4g}{unit}, "
                     f"TFLM {report['tflm_metric']:.4g}{unit} (TFLM vs TFLite max output diff {report['tflm_vs_tflite_max_output_diff']})")
    size = f"  size: int8 .tflite {report['tflite_bytes']} bytes"
    if report.get("float_tflite_bytes"):
        size += f" (float {report['float_tflite_bytes']} bytes, ratio {report['tflite_bytes'] / report['float_tflite_bytes']:.3f})"
    lines.append(size)
    lines.extend(pruning_summary(report.get("pruning"), report["sparsity"]))
    lines.extend(brought_summary(report.get("brought")))
    if report.get("distillation"):
        d = report["distillation"]
        lines.append(f"  distillation (teacher {d['teacher']}, T={d['temperature']:g}, alpha={d['alpha']:g}): int8 TFLM "
                     f"{d['metric_name']} {d['distilled']['tflm']:.2f} distilled vs {d['alone']['tflm']:.2f} trained "
                     f"alone (float {d['distilled']['float']:.2f} vs {d['alone']['float']:.2f})")
    scratch = report.get("arena_kernel_scratch_bytes") or 0
    kernel = (f", {report['kernels']} scratch up to {scratch} for {report['arena_kernel_scratch_op']}" if scratch
              else f", no {report['kernels']} kernel scratch")
    used = report.get("arena_device_used_bytes")
    device = f"; arena_used_bytes {used} expected" if used else ""
    need = report["arena_bytes"] - report["arena_margin_bytes"]
    lines.append(f"  arena: {report['arena_bytes']} bytes (TFLM's need on the core {need}{kernel}, + margin "
                 f"{report['arena_margin_bytes']}{device}; the 64-bit host needs {report['arena_measured_bytes']}), "
                 f"ops: {', '.join(report['ops'])}")
    lines.extend(memory_plan_summary(report.get("memory_plan")))
    if report.get("latency_estimate_us") is not None:
        from pipeline.target.profile import cpi_line, summary as profile_summary

        span = report.get("latency_estimate_range_us")
        lines.append(profile_summary(report["latency_estimate_us"], report["energy_estimate_uj"],
                                     report["cost_model"], report["profile_top_latency"], report["profile_peak"],
                                     tuple(span) if span and span[0] != span[1] else None,
                                     cpi_line(report) if "cpi_source" in report else None))
    if report.get("audio_frontend") and report.get("frontend_estimate"):
        fe, settings = report["frontend_estimate"], report["audio_frontend"]
        lines.append(f"  audio front end: {settings['library']} {settings['version']}, {settings['window_ms']}/"
                     f"{settings['stride_ms']} ms, {settings['mel_channels']} mel channels -> "
                     f"{settings['feature_shape'][0]}x{settings['feature_shape'][1]}; {fe['est_us'] / 1000:.3f} ms per "
                     f"{settings['clip_samples'] / settings['sample_rate']:g} s of audio (ESTIMATE, "
                     f"{100 * fe['share_with_model']:.0f}% of front end + one inference)")
    lines.append(f"  fit: flash {report['flash_bytes']} / {report['flash_budget_bytes']}, RAM {report['ram_bytes']} / "
                 f"{report['ram_budget_bytes']} -> {'fits' if report['fits'] else 'does NOT fit'}"
                 + (f" (runtime {report['runtime_flash_bytes']} B flash, {report['runtime_ram_bytes']} B RAM: "
                    f"{report['runtime_source']})" if report.get("runtime_source") else ""))
    if report.get("ram_budget_source"):
        lines.append(f"  budgets: flash from {report.get('flash_budget_source') or 'the board file'}; RAM from "
                     f"{report['ram_budget_source']}")
    return "\n".join(lines)
