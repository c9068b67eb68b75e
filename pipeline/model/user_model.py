"""Your own model: `--model=PATH` to a Keras model file (.keras or .h5, Keras 3 or tf-keras) or a builder .py.

A user model becomes the same `ModelSpec` the zoo uses, so training, pruning, QAT, conversion and explore treat it
like a zoo model. Cheap to describe (no TensorFlow, no user code): the spec is made from the file's config (a model
file) or from the builder's source read with `ast` (a .py); the model itself is made only when a stage trains.

- A model file with weights is *pretrained*: it is fine-tuned (pruning and QAT start from its weights, for a few
  `--epochs`), not retrained; `--epochs=0` converts it as it is. A file without weights trains from scratch.
- A builder .py defines `build_model(input_shape, num_classes, width=1.0, depth=...)` (`width` and `depth` are
  optional: the knobs it declares are the ones `invoke explore` searches) and may set EPOCHS, BATCH_SIZE,
  LEARNING_RATE, OPTIMIZER, LOSS, INPUT_SHAPE, DEPTH_RANGE and SEARCH_SPACE at module level. The input shape and
  the number of classes come from the data. Running it runs the user's code: that is what a builder is for.
- The stage cache keys on the file's content, not its name: the stage folder is `_models/<stem>-<hash8>/`.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.model import keras_bridge
from pipeline.model.zoo import SEARCH_SMALL, ModelSpec

SUFFIXES = (".keras", ".h5", ".py")
BUILDER = "build_model"
CONTRACT = (f"{BUILDER}(input_shape, num_classes, width=1.0, depth=2) returning a Keras model (width and depth "
            "optional)")
SETTINGS = {"EPOCHS": int, "BATCH_SIZE": int, "LEARNING_RATE": (int, float), "OPTIMIZER": str, "LOSS": str,
            "INPUT_SHAPE": (tuple, list), "DEPTH_RANGE": (tuple, list), "SEARCH_SPACE": dict}
OPTIMIZERS = ("adam", "sgd", "rmsprop")
LOSSES = {"sparse_categorical_crossentropy": "classification", "mse": "regression", "mae": "regression"}
FINE_TUNE_EPOCHS = 4  # a pretrained file: pruning and QAT fine-tune from its weights
SCRATCH_EPOCHS = 30


def is_user_model(model: str | None) -> bool:
    return bool(model) and Path(str(model)).suffix in SUFFIXES


def folder_name(model: str) -> str:
    """The board folder's name: a zoo model's name, or a user model file's stem."""
    return Path(model).stem if is_user_model(model) else model


def digest(model: str) -> str:
    path = Path(model)
    if not path.is_file():
        raise PipelineError(f"--model={model}: no such file (a model file .keras/.h5, a builder .py, or a zoo name)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_name(model: str) -> str:
    """The stage folder under _models/: the stem and the content's hash, so an edited file never reuses old stages."""
    return f"{Path(model).stem}-{digest(model)[:8]}"


# -- the data decides a builder's shapes ------------------------------------------------------------------------
@dataclass
class DataShape:
    input_shape: tuple | None  # None: an image folder (the model or INPUT_SHAPE decides)
    num_classes: int | None  # None: regression
    outputs: int  # values per example of y


def data_shape(source: str, seed: int) -> DataShape:
    """What --data holds, read without TensorFlow: the input shape, the classes (labels are integers) or not."""
    from pipeline.model import datasets

    if source == "digits":
        return DataShape((8, 8, 1), 10, 1)
    if source == "sine":
        return DataShape((1,), None, 1)
    path = Path(source)
    if path.is_dir():
        classes = [p for p in path.iterdir() if p.is_dir()]
        if not classes:
            raise PipelineError(f"dataset folder {path} has no class sub-folders (expected {path}/<class>/<image>.png)")
        return DataShape(None, len(classes), 1)
    if path.suffix != ".npz" or not path.is_file():
        raise PipelineError(f"dataset {source} not found: pass 'digits', 'sine', an .npz file or a folder of class "
                            "sub-folders")
    try:
        archive = np.load(path, allow_pickle=False)
        x, y = archive["x_train"], archive["y_train"]
        y_test = archive["y_test"] if "y_test" in archive.files else y
    except (OSError, ValueError, KeyError) as exc:
        raise PipelineError(f"dataset {path} lacks x_train/y_train or is not a readable .npz file: {exc}") from None
    del datasets
    y = np.asarray(y)
    integer = np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and y.size and
                                                     np.all(np.equal(np.mod(y, 1), 0)))
    if integer and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        labels = archive["labels"].tolist() if "labels" in archive.files else []
        top = int(max(np.max(y), np.max(y_test))) + 1 if y.size else 0
        return DataShape(tuple(x.shape[1:]), max(top, len(labels)), 1)
    return DataShape(tuple(x.shape[1:]), None, int(np.prod(y.shape[1:])) if y.ndim > 1 else 1)


# -- a model file -----------------------------------------------------------------------------------------------
PASS_BACK = {"Activation", "Softmax", "Dropout", "ReLU", "LeakyReLU", "Reshape", "Flatten", "BatchNormalization"}


def _output_units(mf: keras_bridge.ModelFile) -> tuple[int | None, bool]:
    """The number of outputs of the model's last Dense and whether a softmax follows it, from the config."""
    by_name = {l.name: l for l in mf.layers}
    name = mf.outputs[0] if mf.outputs else (mf.layers[-1].name if mf.layers else None)
    softmax = False
    while name in by_name:
        layer = by_name[name]
        act = keras_bridge._activation_name(layer.config.get("activation"))
        softmax = softmax or act == "softmax" or layer.class_name == "Softmax"
        if "units" in layer.config:
            return int(layer.config["units"]), softmax
        if layer.class_name not in PASS_BACK or not layer.inbound:
            return None, softmax
        name = layer.inbound[0]
    return None, softmax


def _file_spec(model: str, data: DataShape | None, trust: bool) -> ModelSpec:
    mf = keras_bridge.read(Path(model))
    keras_bridge.check(mf, trust)
    input_shape = tuple(int(d) for d in mf.input_shape)
    units, softmax = _output_units(mf)
    task = "classification" if (data.num_classes is not None if data else (units or 0) > 1) else "regression"
    if data is not None:
        if data.input_shape is not None:
            shown = tuple(data.input_shape)
            if shown != input_shape and not (shown + (1,) == input_shape):
                raise PipelineError(f"--data holds inputs of shape {shown}, but {Path(model).name} takes "
                                    f"{input_shape}: give data shaped like the model's input")
        if task == "classification" and units is not None and data.num_classes > units:
            raise PipelineError(f"--data holds {data.num_classes} classes, but {Path(model).name} outputs {units}: "
                                f"give data with at most {units} classes, or a model with {data.num_classes} outputs")
        if task == "regression" and units is not None and data.outputs != units:
            raise PipelineError(f"--data holds {data.outputs} target values per example, but {Path(model).name} "
                                f"outputs {units}")
    blocker = keras_bridge.qat_blocker(mf)
    return ModelSpec(Path(model).stem, f"{mf.format} file {Path(model).name}", input_shape, task,
                     units if task == "classification" else None, None,
                     FINE_TUNE_EPOCHS if mf.has_weights else SCRATCH_EPOCHS, 32, 1e-3,
                     lambda width, depth: _made_file(model, trust), 1, (1, 1),
                     qat_unsupported=blocker, search={k: v for k, v in SEARCH_SMALL.items() if k != "width"},
                     source=str(model), pretrained=mf.has_weights, knobs=(),
                     from_logits=task == "classification" and not softmax)


def _made_file(model: str, trust: bool):
    mf = keras_bridge.read(Path(model))
    keras_bridge.check(mf, trust)
    return keras_bridge.build(mf, trust)


# -- a builder .py ------------------------------------------------------------------------------------------------
def builder_source(path: Path) -> tuple[list[str], dict]:
    """The builder's parameters and its module-level settings, read with ast: no user code runs."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise PipelineError(f"builder {path} is not valid Python: {exc}") from None
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == BUILDER), None)
    if fn is None:
        raise PipelineError(f"builder {path} must define {CONTRACT}")
    params = [a.arg for a in fn.args.args + fn.args.kwonlyargs]
    if len(fn.args.args) < 2:
        raise PipelineError(f"builder {path}: {BUILDER} takes {', '.join(params) or 'nothing'}; it must take "
                            f"(input_shape, num_classes, ...): {CONTRACT}")
    settings = {}
    defaults = dict(zip([a.arg for a in fn.args.args][::-1], fn.args.defaults[::-1]))
    if isinstance(defaults.get("depth"), ast.Constant) and isinstance(defaults["depth"].value, int):
        settings["_depth"] = defaults["depth"].value
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in SETTINGS:
            name = node.targets[0].id
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise PipelineError(f"builder {path}: {name} must be a plain value (a literal), not an expression") from None
            if not isinstance(value, SETTINGS[name]):
                raise PipelineError(f"builder {path}: {name} = {value!r} has the wrong type")
            settings[name] = value
    return params, settings


def _builder_spec(model: str, data: DataShape | None, trust: bool) -> ModelSpec:
    path = Path(model)
    params, s = builder_source(path)
    if s.get("OPTIMIZER", "adam") not in OPTIMIZERS:
        raise PipelineError(f"builder {path}: OPTIMIZER must be one of {', '.join(OPTIMIZERS)}")
    if s.get("LOSS") is not None and s["LOSS"] not in LOSSES:
        raise PipelineError(f"builder {path}: LOSS must be one of {', '.join(LOSSES)}")
    shape = tuple(s["INPUT_SHAPE"]) if "INPUT_SHAPE" in s else (data.input_shape if data else None)
    if shape is None:
        raise PipelineError(f"builder {path}: set INPUT_SHAPE in it (an image folder does not say the input size) "
                            "or pass --data=FILE.npz")
    task = LOSSES.get(s.get("LOSS"), "classification" if data is None or data.num_classes else "regression")
    classes = data.num_classes if data and task == "classification" else None
    knobs = tuple(k for k in ("width", "depth") if k in params)
    depth_range = tuple(s.get("DEPTH_RANGE", (1, 4))) if "depth" in knobs else (1, 1)
    search = dict(s.get("SEARCH_SPACE") or {})
    base = dict(SEARCH_SMALL)
    if "width" not in knobs:
        base.pop("width")
    if "depth" in knobs:
        base["depth"] = depth_range
    search = {**base, **search}
    outputs = classes if classes else (data.outputs if data else 1)

    def build(width: float, depth: int | None):
        return _made_builder(path, shape, outputs, knobs, width, depth)

    return ModelSpec(path.stem, f"builder {path.name}", tuple(int(d) for d in shape), task, classes, None,
                     int(s.get("EPOCHS", SCRATCH_EPOCHS)), int(s.get("BATCH_SIZE", 32)),
                     float(s.get("LEARNING_RATE", 1e-3)), build, s.get("_depth"), depth_range, search=search,
                     source=str(path), pretrained=False, knobs=knobs, optimizer=s.get("OPTIMIZER", "adam"),
                     loss=s.get("LOSS"))


def _made_builder(path: Path, shape, outputs: int, knobs, width: float, depth: int | None):
    """Run the user's build_model: a tf_keras model is used as it is, a Keras 3 one goes through the bridge."""
    from pipeline.model import tfenv

    spec = importlib.util.spec_from_file_location(f"user_builder_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}",
                                                  path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any error is theirs to see, in one line
        raise PipelineError(f"builder {path} failed to import: {type(exc).__name__}: {exc}") from None
    kwargs = {}
    if "width" in knobs:
        kwargs["width"] = width
    if "depth" in knobs and depth is not None:
        kwargs["depth"] = depth
    try:
        model = getattr(module, BUILDER)(tuple(shape), outputs, **kwargs)
    except Exception as exc:
        raise PipelineError(f"builder {path}: {BUILDER}({tuple(shape)}, {outputs}"
                            + "".join(f", {k}={v}" for k, v in kwargs.items())
                            + f") failed: {type(exc).__name__}: {exc}") from None
    if isinstance(model, tfenv.keras().Model):
        return model
    if type(model).__module__.startswith("keras"):  # Keras 3: through the bridge, like a Keras 3 file
        with tempfile.TemporaryDirectory() as tmp:
            saved = Path(tmp) / f"{path.stem}.keras"
            model.save(saved)
            mf = keras_bridge.read(saved)
            keras_bridge.check(mf, trust=True)  # the builder is the user's own code
            return keras_bridge.build(mf, trust=True)
    raise PipelineError(f"builder {path}: {BUILDER} returned {type(model).__name__}, not a Keras model")


# -- entry points -------------------------------------------------------------------------------------------------
def resolve(model: str, data: str | None, seed: int, trust: bool = False) -> ModelSpec:
    """A zoo model by name, or a user model by path (.keras, .h5, .py)."""
    from pipeline.model import zoo

    return spec_for(model, data, seed, trust) if is_user_model(model) else zoo.get_spec(model)


def spec_for(model: str, data: str | None, seed: int, trust: bool = False) -> ModelSpec:
    """The ModelSpec of a user model, checked against --data (both shapes named on a mismatch)."""
    digest(model)  # exists
    if data is None:
        raise PipelineError(f"--model={model} is your own model: pass --data=FILE.npz or --data=FOLDER with its "
                            "training and test data")
    shape = data_shape(data, seed)
    if Path(model).suffix == ".py":
        return _builder_spec(model, shape, trust)
    return _file_spec(model, shape, trust)


def make_checked(spec: ModelSpec, data, width: float, depth: int | None):
    """Make the model for training, and for a Keras 3 file prove its tf_keras copy on the data first.
    Returns the model and what the bridge did (None for a builder that returned a tf_keras model)."""
    started = time.perf_counter()
    if Path(spec.source).suffix == ".py":
        return spec.make(width, depth), None
    mf = keras_bridge.read(Path(spec.source))
    model = spec.make(width, depth)
    proof = keras_bridge.prove(mf, model, data.x_val if len(data.x_val) else data.x_train, started)
    return model, {"format": mf.format, "keras_version": mf.keras_version, "pretrained": mf.has_weights,
                   "max_diff": proof.max_diff, "proof_samples": proof.samples, "proof_reference": proof.reference,
                   "bridge_seconds": proof.seconds, "qat_unsupported": spec.qat_unsupported}
