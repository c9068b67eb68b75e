"""A user's Keras model file, read without running its code, and rebuilt in tf_keras (which tfmot needs).

TensorFlow 2.21's default Keras is Keras 3, whose files tf_keras cannot load, and tfmot has no Keras 3 support. So:

- `read` parses the file itself: a `.keras` archive (config.json, model.weights.h5, metadata.json) or an `.h5`
  (model_config attribute, model_weights group), with `json` and `h5py` only. Nothing in the file is executed.
- `check` refuses, naming the layer, what the bridge cannot translate (with what to use instead), a `Lambda` layer
  or a custom object unless the user trusts the file (Keras' safe_mode semantics), shared layers and nested models.
- `build` rebuilds a Keras 3 model layer by layer in tf_keras from its config and copies the weights from the file;
  a tf_keras (Keras 2) file is loaded by tf_keras itself (safe_mode unless trusted).
- `prove` runs the Keras 3 original (loaded by Keras 3 with safe_mode, after `check`) and the copy on the user's
  data: their outputs must agree to `TOLERANCE`, else the first layer whose outputs differ is named.
"""
from __future__ import annotations

import json
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError

TOLERANCE = 1e-5
PROOF_SAMPLES = 256

# Layers the bridge translates (and the int8 converter and TFLM run), by class name; both Keras versions.
SUPPORTED = {
    "InputLayer", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization", "ReLU",
    "Activation", "LeakyReLU", "Softmax", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten",
    "Reshape", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "Add", "Concatenate", "ZeroPadding1D",
    "ZeroPadding2D", "Rescaling", "Normalization",
}
# What tfmot's default 8-bit QAT scheme cannot wrap (checked with tfmot 0.8.1): such a model is converted with
# post-training int8 instead, and the build says so.
NO_QAT = {"Conv1D": "tfmot's QAT has no Conv1D", "Rescaling": "tfmot's QAT has no Rescaling layer",
          "Normalization": "tfmot's QAT has no Normalization layer"}
INSTEAD = {
    "LSTM": "a Conv1D stack over the time axis (TFLM has no int8 LSTM kernel this pipeline can target)",
    "GRU": "a Conv1D stack over the time axis", "SimpleRNN": "a Conv1D stack over the time axis",
    "Bidirectional": "a Conv1D stack over the time axis", "Conv2DTranspose": "UpSampling2D is not supported either: "
    "a Conv2D on a larger input", "Lambda": "built-in layers (e.g. Rescaling, Reshape, Activation)",
    "Multiply": "Add or Concatenate", "Subtract": "Add", "Attention": "Dense and Add",
    "MultiHeadAttention": "Dense and Add", "LayerNormalization": "BatchNormalization",
}
ACTIVATIONS = {"relu", "sigmoid", "softmax", "tanh", "linear", "elu", "selu", "softplus", "softsign", "gelu",
               "swish", "exponential", "mish", "hard_sigmoid", "silu", "relu6", "leaky_relu"}
MODEL_CLASSES = {"Sequential", "Functional", "Model"}


@dataclass
class LayerDef:
    name: str
    class_name: str
    config: dict
    inbound: list = field(default_factory=list)  # names of the layers whose outputs it takes, in order
    calls: int = 1  # how many times the model calls it (a shared layer is called more than once)
    module: str | None = None  # where Keras would import its class from (Keras 3 files say it)
    registered_name: str | None = None  # a custom object's registration, e.g. "package>Class"


@dataclass
class ModelFile:
    path: Path
    keras: int  # 3 or 2 (tf_keras)
    keras_version: str
    kind: str  # "Sequential" or "Functional"
    name: str
    layers: list[LayerDef]
    outputs: list[str]  # layer names
    has_weights: bool
    raw_config: dict
    weights: dict[str, list[np.ndarray]] = field(default_factory=dict)  # layer name -> arrays in tf_keras order

    @property
    def format(self) -> str:
        return f"{'Keras 3' if self.keras == 3 else 'tf-keras (Keras 2)'} {self.path.suffix}"

    @property
    def input_shape(self) -> tuple:
        for layer in self.layers:
            if layer.class_name == "InputLayer":
                cfg = layer.config
                shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
                return tuple(shape[1:])
        shape = self.raw_config.get("config", {}).get("build_input_shape")
        if shape:
            return tuple(shape[1:])
        first = self.layers[0].config if self.layers else {}
        shape = first.get("batch_input_shape") or first.get("batch_shape")
        if shape:
            return tuple(shape[1:])
        raise PipelineError(f"model file {self.path}: no input shape in its config (save it with an Input layer)")


def _snake(name: str) -> str:
    """Keras 3's name for an object in a .keras weights file: its class name in snake case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _history_names(obj) -> list[str]:
    """The layer names a Keras 3 or Keras 2 inbound node refers to."""
    found = []
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            found.append(obj["config"]["keras_history"][0])
        else:
            for value in obj.values():
                found.extend(_history_names(value))
    elif isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):  # Keras 2: [name, node, index, {}]
            found.append(obj[0])
        else:
            for value in obj:
                found.extend(_history_names(value))
    return found


def _layers_of(config: dict) -> tuple[str, list[LayerDef], list[str]]:
    kind = config.get("class_name")
    inner = config.get("config", {})
    raw = inner.get("layers", []) if isinstance(inner, dict) else inner
    layers = []
    for i, entry in enumerate(raw):
        cfg = entry.get("config", {})
        name = entry.get("name") or cfg.get("name") or f"layer{i}"
        nodes = entry.get("inbound_nodes") or []
        inbound = _history_names(nodes[0]) if nodes else []
        layers.append(LayerDef(name, entry.get("class_name", "?"), cfg, inbound, max(1, len(nodes)),
                               entry.get("module"), entry.get("registered_name")))
    if kind == "Sequential":
        names = [l.name for l in layers if l.class_name != "InputLayer"]
        for prev, layer in zip([None] + [l.name for l in layers], layers):
            layer.inbound = [prev] if prev else []
        outputs = names[-1:]
        kind = "Sequential"
    else:
        outs = inner.get("output_layers", [])
        outputs = _history_names(outs) if outs and isinstance(outs[0], list) else ([outs[0]] if outs else [])
        kind = "Functional"
    return kind, layers, outputs


def read(path: Path) -> ModelFile:
    """Parse a .keras or .h5 model file: its config and weights, with json and h5py only (no Keras code runs)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"model file {path} not found")
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if "config.json" not in names:
                    raise PipelineError(f"model file {path} has no config.json: save it with model.save('x.keras')")
                config = json.loads(archive.read("config.json"))
                meta = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
                version = str(meta.get("keras_version", "3"))
                weights_bytes = archive.read("model.weights.h5") if "model.weights.h5" in names else None
            kind, layers, outputs = _layers_of(config)
            mf = ModelFile(path, 3 if version.startswith("3") else 2, version, kind, config.get("config", {})
                           .get("name", path.stem), layers, outputs, False, config)
            if weights_bytes is not None and mf.keras == 3:
                import io

                with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
                    mf.weights = _keras3_weights(h5, layers)
            mf.has_weights = weights_bytes is not None and (mf.keras == 2 or bool(mf.weights))
            return mf
        with h5py.File(path, "r") as h5:
            if "model_config" not in h5.attrs:
                raise PipelineError(f"model file {path} holds no model config (weights only?): save the whole model "
                                    "with model.save()")
            raw = h5.attrs["model_config"]
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            version = h5.attrs.get("keras_version", "2")
            version = version.decode() if isinstance(version, bytes) else str(version)
            kind, layers, outputs = _layers_of(config)
            mf = ModelFile(path, 3 if version.startswith("3") else 2, version, kind,
                           config.get("config", {}).get("name", path.stem), layers, outputs,
                           "model_weights" in h5, config)
            if mf.keras == 3 and mf.has_weights:
                mf.weights = _h5_weights(h5["model_weights"])
            return mf
    except PipelineError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise PipelineError(f"model file {path} cannot be read as a Keras model: {exc}") from None


def _keras3_weights(h5, layers: list[LayerDef]) -> dict[str, list[np.ndarray]]:
    """A .keras weights file names each layer by its class in snake case, numbered in the model's order."""
    used: dict[str, int] = {}
    found = {}
    group = h5.get("layers")
    if group is None:
        return {}
    for layer in layers:
        base = _snake(layer.class_name)
        n = used.get(base, 0)
        used[base] = n + 1
        key = base if n == 0 else f"{base}_{n}"
        if key in group and "vars" in group[key]:
            vars_ = group[key]["vars"]
            arrays = [np.asarray(vars_[str(i)]) for i in range(len(vars_))]
            if arrays:
                found[layer.name] = arrays
    return found


def _h5_weights(group) -> dict[str, list[np.ndarray]]:
    found = {}
    for name in group.attrs.get("layer_names", []):
        name = name.decode() if isinstance(name, bytes) else str(name)
        sub = group[name]
        order = [n.decode() if isinstance(n, bytes) else str(n) for n in sub.attrs.get("weight_names", [])]
        if order:
            found[name] = [np.asarray(sub[n]) for n in order]
    return found


# -- what is refused ---------------------------------------------------------------------------------------------
def _custom_objects(obj, where: str) -> list[str]:
    """Objects in a config that are not Keras' own (a custom class, function or registered object)."""
    found = []
    if isinstance(obj, dict):
        module = obj.get("module")
        if obj.get("class_name") in ("__lambda__", "function") or (
                isinstance(module, str) and not module.startswith(("keras", "tf_keras", "builtins"))):
            found.append(f"{where}: {obj.get('registered_name') or obj.get('class_name')}")
        for key, value in obj.items():
            if key not in ("module",):
                found.extend(_custom_objects(value, where))
    elif isinstance(obj, list):
        for value in obj:
            found.extend(_custom_objects(value, where))
    return found


def _activation_name(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value.get("config", value).get("name") if value.get("class_name") == "function" else value.get("class_name")
    return str(value)


def check(mf: ModelFile, trust: bool) -> None:
    """Refuse up front, naming the layer: code the file would run (unless trusted), what cannot be translated."""
    for layer in mf.layers:
        where = f"layer '{layer.name}' ({layer.class_name})"
        custom = _custom_objects(layer.config, where)
        if (layer.registered_name and ">" in layer.registered_name) or (
                layer.module and not layer.module.startswith(("keras", "tf_keras"))):
            custom.insert(0, f"{where}: custom class {layer.registered_name or layer.module + '.' + layer.class_name}")
        if layer.class_name == "Lambda" or custom:
            if not trust:
                raise PipelineError(f"model file {mf.path}: {where} runs code stored in the file"
                                    f"{'' if layer.class_name == 'Lambda' else ' (' + custom[0].split(': ', 1)[1] + ')'}"
                                    "; loading a model runs no code unless you pass --trust-model (Keras' safe_mode)")
        if layer.class_name in MODEL_CLASSES:
            raise PipelineError(f"model file {mf.path}: {where} is a nested model: save it as one flat model "
                                "(call its layers on the outer model's tensors)")
        if layer.class_name not in SUPPORTED:
            instead = INSTEAD.get(layer.class_name, "one of " + ", ".join(sorted(SUPPORTED - {"InputLayer"})))
            raise PipelineError(f"model file {mf.path}: {where} cannot be converted to int8 for TFLM by this "
                                f"pipeline; use {instead}")
        if layer.calls > 1:
            raise PipelineError(f"model file {mf.path}: {where} is called {layer.calls} times (a shared layer): "
                                "give each call its own layer")
        act = _activation_name(layer.config.get("activation"))
        if act is not None and act not in ACTIVATIONS:
            raise PipelineError(f"model file {mf.path}: {where} uses activation '{act}', which cannot be "
                                f"translated; use one of {', '.join(sorted(ACTIVATIONS))}")
    if not mf.layers:
        raise PipelineError(f"model file {mf.path} has no layers")


AFFINE = ("Rescaling", "Normalization")
FOLD_INTO = ("Conv1D", "Conv2D", "Dense")


def _affine(layer: LayerDef, arrays: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A Rescaling or (non-inverted, last-axis) Normalization as y = x * scale + offset, or None."""
    cfg = layer.config
    if layer.class_name == "Rescaling":
        return (np.asarray(cfg.get("scale", 1.0), dtype=np.float64).reshape(-1),
                np.asarray(cfg.get("offset", 0.0), dtype=np.float64).reshape(-1))
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if cfg.get("invert") or axis != -1:
        return None
    mean, variance = cfg.get("mean"), cfg.get("variance")
    if mean is None and arrays:
        mean, variance = arrays[0], arrays[1]
    if mean is None:
        return None
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.maximum(np.sqrt(np.asarray(variance, dtype=np.float64).reshape(-1)), 1e-7)
    return 1.0 / std, -mean / std


def folds(mf: ModelFile) -> dict[str, str]:
    """Rescaling/Normalization layers folded into the one Conv1D/Conv2D/Dense they feed, where that is exact (an
    offset only where the consumer pads nothing): affine name -> consumer name."""
    found = {}
    consumers: dict[str, list[LayerDef]] = {}
    for layer in mf.layers:
        for name in layer.inbound:
            consumers.setdefault(name, []).append(layer)
    for layer in mf.layers:
        if layer.class_name not in AFFINE or layer.name in mf.outputs or len(consumers.get(layer.name, [])) != 1:
            continue
        consumer = consumers[layer.name][0]
        affine = _affine(layer, mf.weights.get(layer.name))
        if consumer.class_name not in FOLD_INTO or affine is None or consumer.config.get("groups", 1) != 1:
            continue
        if np.any(affine[1] != 0) and consumer.class_name != "Dense" and consumer.config.get("padding") != "valid":
            continue  # the zeros a convolution pads with would be shifted by the offset
        found[layer.name] = consumer.name
    return found


def _fold(affine_layer: LayerDef, arrays, consumer) -> None:
    """consumer(x * scale + offset) == consumer'(x): scale the kernel's input channels, move the offset into the bias."""
    scale, offset = _affine(affine_layer, arrays)
    weights = consumer.get_weights()
    kernel = weights[0].astype(np.float64)
    per_in = kernel.shape[-2]
    scale = np.broadcast_to(scale, (per_in,)) if scale.size == 1 else scale
    offset = np.broadcast_to(offset, (per_in,)) if offset.size == 1 else offset
    shape = [1] * (kernel.ndim - 2) + [per_in, 1]
    bias = weights[1].astype(np.float64) + (kernel * offset.reshape(shape)).reshape(-1, kernel.shape[-1]).sum(0)
    consumer.set_weights([(kernel * scale.reshape(shape)).astype(np.float32), bias.astype(np.float32)])


def qat_blocker(mf: ModelFile) -> str | None:
    """Why tfmot's QAT cannot wrap this model (it is then converted post-training), or None."""
    folded = folds(mf) if mf.keras == 3 else {}
    for layer in mf.layers:
        if layer.name in folded:
            continue
        if layer.class_name in NO_QAT:
            return f"layer '{layer.name}': {NO_QAT[layer.class_name]}"
        if layer.class_name == "Activation" and _activation_name(layer.config.get("activation")) in (
                "hard_sigmoid", "elu", "selu", "gelu", "mish", "exponential", "softplus", "softsign"):
            return f"layer '{layer.name}': tfmot's QAT has no {layer.config.get('activation')} activation"
    return None


# -- the tf_keras copy ----------------------------------------------------------------------------------------
def _clean(value):
    """Keras 3 config values as tf_keras takes them: dtype policies to their name, serialized objects to
    {class_name, config} without Keras 3's extra keys."""
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy":
            return value["config"]["name"]
        if value.get("class_name") == "__tuple__":
            return tuple(_clean(v) for v in value["config"]["value"])
        if "class_name" in value and "config" in value and isinstance(value["config"], dict):
            return {"class_name": value["class_name"], "config": {k: _clean(v) for k, v in value["config"].items()}}
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _object(kind: str, value):
    """An initializer, regularizer or constraint for tf_keras, keeping only the arguments tf_keras knows."""
    import inspect

    from pipeline.model import tfenv

    if not isinstance(value, dict):
        return value
    module = getattr(tfenv.keras(), kind)
    cls = module.get(value["class_name"]) if kind != "regularizers" else None
    if kind == "regularizers":
        cls = getattr(module, value["class_name"], None)
        if cls is None:
            return None
        return cls(**{k: v for k, v in value["config"].items() if k in inspect.signature(cls).parameters})
    known = inspect.signature(type(cls).__init__).parameters
    return type(cls)(**{k: v for k, v in value["config"].items() if k in known})


def _tf_layer(layer: LayerDef, tk) -> list:
    """The tf_keras layer(s) for one Keras 3 layer: an activation tf_keras lacks becomes a layer of its own."""
    import inspect

    cls = getattr(tk.layers, layer.class_name)
    cfg = {k: _clean(v) for k, v in layer.config.items()}
    extra = []
    act = _activation_name(layer.config.get("activation"))
    if act is not None:
        if act in ("relu6", "leaky_relu") and layer.class_name != "Activation":
            cfg["activation"] = "linear"
            extra.append(tk.layers.ReLU(max_value=6.0, name=f"{layer.name}_relu6") if act == "relu6" else
                         tk.layers.LeakyReLU(alpha=0.2, name=f"{layer.name}_leaky_relu"))
        elif act == "relu6":
            return [tk.layers.ReLU(max_value=6.0, name=layer.name)]
        elif act == "leaky_relu":
            return [tk.layers.LeakyReLU(alpha=0.2, name=layer.name)]
        else:
            cfg["activation"] = "swish" if act == "silu" else act
    if layer.class_name == "LeakyReLU" and "negative_slope" in cfg:
        cfg["alpha"] = cfg.pop("negative_slope")
    if layer.class_name == "ReLU" and cfg.get("negative_slope") == 0.0:
        cfg["negative_slope"] = 0.0
    if layer.class_name == "InputLayer":
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        return [tk.layers.InputLayer(input_shape=tuple(shape[1:]), name=layer.name)]
    if layer.class_name == "SeparableConv2D":
        # Two layers, the same arithmetic: tfmot's QAT splits a SeparableConv2D itself, naming its new Conv2D
        # "conv2d" (which clashes with a user's layer of that name), and channel pruning sees through a plain
        # depthwise + 1x1 convolution. The 1x1 keeps the user's name.
        common = {k: cfg[k] for k in ("padding", "data_format", "trainable", "dtype") if k in cfg}
        depthwise = tk.layers.DepthwiseConv2D(cfg["kernel_size"], strides=cfg.get("strides", 1),
                                              depth_multiplier=cfg.get("depth_multiplier", 1),
                                              dilation_rate=cfg.get("dilation_rate", 1), use_bias=False,
                                              name=f"{layer.name}_depthwise", **common)
        pointwise = tk.layers.Conv2D(cfg["filters"], 1, use_bias=cfg.get("use_bias", True),
                                     activation=cfg.get("activation", "linear"), name=layer.name,
                                     **{k: v for k, v in common.items() if k != "padding"})
        return [depthwise, pointwise] + extra
    for key in list(cfg):
        if key.endswith("_initializer"):
            cfg[key] = _object("initializers", cfg[key])
        elif key.endswith("_regularizer"):
            cfg[key] = _object("regularizers", cfg[key])
        elif key.endswith("_constraint"):
            cfg[key] = _object("constraints", cfg[key])
    params = set()
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            params |= set(inspect.signature(klass.__init__).parameters)
    params |= {"name", "trainable", "dtype"}
    dropped = {k: v for k, v in cfg.items() if k not in params}
    for key, value in dropped.items():
        if value not in (None, False, 0, [], {}, "") and key not in ("build_config", "optional", "sparse", "ragged"):
            raise PipelineError(f"layer '{layer.name}' ({layer.class_name}): option {key}={value!r} has no tf_keras "
                                "equivalent; save the model without it")
        cfg.pop(key)
    return [cls(**cfg)] + extra


def _normalization_weights(layer: LayerDef, arrays: list[np.ndarray] | None):
    """Keras 3 keeps an adapted Normalization's mean and variance as variables; tf_keras takes them as arguments."""
    if arrays and layer.config.get("mean") is None:
        layer.config = {**layer.config, "mean": arrays[0].tolist(), "variance": arrays[1].tolist()}


def build(mf: ModelFile, trust: bool = False):
    """The model as a tf_keras model with the file's weights (a tf_keras file is loaded as it is)."""
    from pipeline.model import tfenv

    tk = tfenv.keras()
    if mf.keras == 2:
        try:
            with tfenv.tfmot().quantization.keras.quantize_scope():
                loaded = tk.models.load_model(mf.path, compile=False, **({"safe_mode": not trust}
                                                                         if mf.path.suffix == ".keras" else {}))
        except Exception as exc:  # tf_keras raises many types on a broken or foreign file
            raise PipelineError(f"model file {mf.path} cannot be loaded by tf_keras: {str(exc).splitlines()[0]}") from None
        if not any(type(l).__name__ == "SeparableConv2D" for l in loaded.layers):
            return loaded
        # Rebuilt like a Keras 3 model (its SeparableConv2D split in two), from its own config and weights.
        config = {"class_name": "Sequential" if type(loaded).__name__ == "Sequential" else "Functional",
                  "config": loaded.get_config()}
        kind, layers, outputs = _layers_of(config)
        mf = ModelFile(mf.path, 2, mf.keras_version, kind, loaded.name, layers, outputs, True, config,
                       {l.name: l.get_weights() for l in loaded.layers if l.get_weights()})
    for layer in mf.layers:
        if layer.class_name == "Normalization":
            _normalization_weights(layer, mf.weights.get(layer.name))
    folded = folds(mf)
    for name, consumer in folded.items():  # the consumer takes the affine's offset into a bias of its own
        layer = next(l for l in mf.layers if l.name == consumer)
        if not layer.config.get("use_bias", True):
            layer.config = {**layer.config, "use_bias": True}
            if layer.name in mf.weights:
                units = mf.weights[layer.name][0].shape[-1]
                mf.weights[layer.name] = mf.weights[layer.name] + [np.zeros(units, np.float32)]
    made: dict[str, list] = {}
    tensors: dict[str, object] = {}
    inputs = []
    if not any(l.class_name == "InputLayer" for l in mf.layers):
        first = tk.layers.Input(mf.input_shape, name="input")
        inputs.append(first)
        previous = first
    else:
        previous = None
    for layer in mf.layers:
        if layer.name in folded:  # no layer of its own: folded into its consumer below
            made[layer.name] = []
            tensors[layer.name] = previous if mf.kind == "Sequential" else tensors[layer.inbound[0]]
            continue
        parts = _tf_layer(layer, tk)
        made[layer.name] = parts
        if layer.class_name == "InputLayer":
            tensor = tk.Input(shape=tuple((layer.config.get("batch_shape") or layer.config.get("batch_input_shape"))[1:]),
                              name=layer.name)
            inputs.append(tensor)
            tensors[layer.name] = tensor
            previous = tensor
            continue
        if mf.kind == "Sequential":
            args = previous
        else:
            sources = [tensors[n] for n in layer.inbound]
            args = sources if layer.class_name in ("Add", "Concatenate") else sources[0]
        tensor = args
        for part in parts:
            tensor = part(tensor)
        tensors[layer.name] = tensor
        previous = tensor
    outputs = [tensors[n] for n in mf.outputs]
    model = tk.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0],
                     name=re.sub(r"\W", "_", mf.name))
    if mf.has_weights:
        for layer in mf.layers:
            arrays = mf.weights.get(layer.name)
            if not arrays or layer.class_name == "Normalization":
                continue
            target = made[layer.name][0]
            try:
                if layer.class_name == "SeparableConv2D":
                    made[layer.name][0].set_weights(arrays[:1])
                    target, arrays = made[layer.name][1], arrays[1:]
                target.set_weights(arrays)
            except ValueError as exc:
                raise PipelineError(f"layer '{layer.name}' ({layer.class_name}): its weights in {mf.path} do not fit "
                                    f"the rebuilt layer: {str(exc).splitlines()[0]}") from None
    for name, consumer in folded.items():
        _fold(next(l for l in mf.layers if l.name == name), mf.weights.get(name), made[consumer][0])
    return model


@dataclass
class Proof:
    max_diff: float
    samples: int
    seconds: float  # what the bridge added: reading, rebuilding, copying the weights and the proof
    reference: str  # what the copy was compared with


def _keras3_model(path: Path):
    """The original, loaded by Keras 3 itself with safe_mode on (check() has already refused anything that runs code)."""
    import keras

    return keras.saving.load_model(path, safe_mode=True, compile=False)


def _tf_name_of(mf: ModelFile, model) -> dict[str, str]:
    """Keras 3 layer name -> the tf_keras layer whose output is that layer's output."""
    names = {l.name for l in model.layers}
    out = {}
    for layer in mf.layers:
        for suffix in ("_relu6", "_leaky_relu"):
            if layer.name + suffix in names:
                out[layer.name] = layer.name + suffix
                break
        else:
            if layer.name in names:
                out[layer.name] = layer.name
    return out


def prove(mf: ModelFile, model, x: np.ndarray, started: float) -> Proof:
    """Both models on the user's data: outputs equal to TOLERANCE, or the first layer whose outputs differ."""
    x = np.asarray(x[:PROOF_SAMPLES], dtype=np.float32)
    if mf.keras == 2:  # the file as tf_keras loads it (safe_mode), against what the pipeline made of it
        from pipeline.model import tfenv

        original = tfenv.keras().models.load_model(mf.path, compile=False)
    else:
        original = _keras3_model(mf.path)
    ref = np.asarray(original.predict(x, verbose=0))
    got = np.asarray(model.predict(x, verbose=0))
    if ref.shape != got.shape:
        raise PipelineError(f"the tf_keras copy of {mf.path} gives outputs of shape {got.shape}, the original "
                            f"{ref.shape}")
    diff = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    limit = TOLERANCE * max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    if diff > limit:
        raise PipelineError(_first_difference(mf, original, model, x, diff, limit))
    return Proof(diff, len(x), round(time.perf_counter() - started, 3),
                 f"the file loaded by {'Keras' if mf.keras == 3 else 'tf_keras'} {mf.keras_version}")


def _first_difference(mf: ModelFile, original, model, x, diff: float, limit: float) -> str:
    import keras

    from pipeline.model import tfenv

    tk = tfenv.keras()
    names = _tf_name_of(mf, model)
    order = [l.name for l in mf.layers if l.class_name != "InputLayer" and l.name in names]
    k3 = keras.Model(original.inputs, [original.get_layer(n).output for n in order])
    k2 = tk.Model(model.inputs, [model.get_layer(names[n]).output for n in order])
    a, b = k3.predict(x[:32], verbose=0), k2.predict(x[:32], verbose=0)
    a, b = (a, b) if len(order) > 1 else ([a], [b])
    for name, ra, rb in zip(order, a, b):
        d = float(np.max(np.abs(np.asarray(ra) - np.asarray(rb))))
        if d > TOLERANCE * max(1.0, float(np.max(np.abs(ra)))):
            cls = next(l.class_name for l in mf.layers if l.name == name)
            return (f"the tf_keras copy of {mf.path} differs from the original by {diff:.3g} (allowed {limit:.0e}); "
                    f"the first layer whose outputs differ is '{name}' ({cls}, max diff {d:.3g}): replace it with a "
                    "layer the bridge copies exactly")
    return f"the tf_keras copy of {mf.path} differs from the original by {diff:.3g} (allowed {limit:.0e})"
