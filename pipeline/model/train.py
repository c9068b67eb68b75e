"""Stage 1: train the float model, seeded, with early stopping on the validation split."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import quiet
from pipeline.errors import PipelineError
from pipeline.model import tfenv
from pipeline.model.datasets import Dataset
from pipeline.model.zoo import ModelSpec


@dataclass
class TrainResult:
    epochs_run: int
    val_metric: float
    params: int
    # A user's model file: what the Keras 3 -> tf_keras bridge did (format, proof, seconds), None otherwise.
    bridge: dict | None = None
    pretrained: bool = False  # brought with trained weights: kept, not trained here


QUIET = False  # `invoke explore` prints one line a trial instead of Keras's per-epoch lines


def keras_verbosity() -> int:
    """Keras' own output only with --verbose (a bar on a terminal, a line per epoch in logs); else progress()."""
    if QUIET or not quiet.verbose():
        return 0
    return 1 if sys.stdout.isatty() and not os.environ.get("CI") else 2


def progress(stage: str, epochs: int) -> list:
    """Callbacks for model.fit: one progress line for the stage (epoch x/y, loss, validation metric, ETA), updated
    in place on a terminal; in logs a line every LOG_EVERY_S seconds and the last one. None with --verbose (Keras'
    own lines) or QUIET."""
    if QUIET or quiet.verbose():
        return []
    import time

    class EpochLine(tfenv.keras().callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = self.shown = time.monotonic()
            self.tty = sys.stdout.isatty()
            self.line = ""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            done = epoch + 1
            elapsed = time.monotonic() - self.start
            val = next((f"{k} {v:.4f}" for k, v in logs.items() if k.startswith("val_") and k != "val_loss"), "")
            eta = elapsed / done * (epochs - done)
            self.line = (f"  {stage}: epoch {done}/{epochs}, loss {logs.get('loss', float('nan')):.4f}"
                         + (f", {val}" if val else "") + f", {elapsed:.0f} s, ETA {eta:.0f} s")
            if self.tty:
                print("\r" + self.line.ljust(96), end="", flush=True)
            elif time.monotonic() - self.shown >= LOG_EVERY_S:
                print(self.line, flush=True)
                self.shown = time.monotonic()

        def on_train_end(self, logs=None):
            if self.line:  # the last line stays, without the ETA
                final = self.line.rsplit(", ETA", 1)[0] + (" (early stop)" if self.model.stop_training else "")
                print(("\r" + final.ljust(96)) if self.tty else final, flush=True)

    return [EpochLine()]


LOG_EVERY_S = 15


def compile_model(model, spec: ModelSpec, learning_rate: float):
    k = tfenv.keras()
    if spec.task == "classification":
        loss, metrics = k.losses.SparseCategoricalCrossentropy(from_logits=spec.from_logits), ["accuracy"]
    else:
        loss, metrics = (k.losses.MeanAbsoluteError() if spec.loss == "mae" else k.losses.MeanSquaredError()), ["mae"]
    optimizers = {"adam": k.optimizers.Adam, "sgd": k.optimizers.SGD, "rmsprop": k.optimizers.RMSprop}
    model.compile(optimizer=optimizers[spec.optimizer](learning_rate), loss=loss, metrics=metrics)
    return model


def monitored_metric(spec: ModelSpec) -> str:
    return "val_accuracy" if spec.task == "classification" else "val_mae"


def seed_everything(seed: int) -> None:
    """Same seed, same weights: seeds Python, NumPy and TF, and makes TF's kernels deterministic (without
    it, multi-threaded reductions make two runs with one seed differ)."""
    tfenv.keras().utils.set_random_seed(seed)
    tfenv.tf().config.experimental.enable_op_determinism()


# Knowledge distillation: the loss mixes the hard labels with the teacher's outputs softened at a temperature.
DISTILL_TEMPERATURE = 4.0
DISTILL_ALPHA = 0.3  # weight of the hard-label loss; the rest goes to matching the softened teacher


def soften(probabilities, temperature: float):
    """softmax(logits / T) from softmax outputs: log p is the logits up to a constant, which softmax ignores."""
    tf = tfenv.tf()
    return tf.nn.softmax(tf.math.log(tf.clip_by_value(probabilities, 1e-7, 1.0)) / temperature, axis=-1)


def distillation_targets(teacher_path: Path, data: Dataset):
    """Hard labels one-hot and the teacher's softened outputs side by side: what the distillation loss reads."""
    import numpy as np

    from pipeline.model.tfenv import load_model

    teacher = load_model(teacher_path)
    classes = teacher.output_shape[-1]
    if classes != len(data.labels):
        raise PipelineError(f"teacher {teacher_path} has {classes} outputs, the data {len(data.labels)} classes: "
                            "distil from a teacher trained on the same classes")

    def pack(x, y):
        soft = np.asarray(soften(teacher.predict(x, verbose=0), DISTILL_TEMPERATURE))
        return np.concatenate([np.eye(classes, dtype=np.float32)[y], soft], axis=1)

    return pack(data.x_train, data.y_train), pack(data.x_val, data.y_val)


def compile_distilled(model, spec: ModelSpec, classes: int):
    k, tf = tfenv.keras(), tfenv.tf()
    t, alpha = DISTILL_TEMPERATURE, DISTILL_ALPHA

    def loss(packed, predicted):
        hard, soft = packed[:, :classes], packed[:, classes:]
        student = soften(predicted, t)
        return (alpha * k.losses.categorical_crossentropy(hard, predicted)
                + (1 - alpha) * t * t * k.losses.kl_divergence(soft, student))

    def accuracy(packed, predicted):
        return tf.cast(tf.equal(tf.argmax(packed[:, :classes], -1), tf.argmax(predicted, -1)), tf.float32)

    model.compile(optimizer=k.optimizers.Adam(spec.learning_rate), loss=loss, metrics=[accuracy])
    return model


BN_STEPS_ENOUGH = 100  # training steps per epoch above which Keras's BN moving averages keep up by themselves
BN_SAMPLE = 1024       # training examples the statistics are re-estimated on


def reestimate_batchnorm(model, x) -> int:
    """Set every BatchNormalization layer's moving mean and variance to the statistics of its input on `x`, in
    inference mode, layer by layer. On a small dataset the moving averages (momentum 0.99, starting at variance 1)
    are still far from the data after a few hundred steps and the model answers one class in inference mode."""
    k = tfenv.keras()
    count = 0
    for layer in model.layers:
        if isinstance(layer, k.layers.BatchNormalization):
            inputs = k.Model(model.input, layer.input).predict(x, verbose=0)
            axes = tuple(range(inputs.ndim - 1))
            layer.moving_mean.assign(inputs.mean(axis=axes))
            layer.moving_variance.assign(inputs.var(axis=axes))
            count += 1
    return count


def _batchnorm_callback(k, model, data: Dataset, batch_size: int):
    """Re-estimate BN statistics at each epoch's end of a small training set and recompute the validation
    figures the early stopping reads (Keras computed them with the stale statistics)."""
    if not any(isinstance(layer, k.layers.BatchNormalization) for layer in model.layers):
        return None
    if len(data.x_train) / batch_size >= BN_STEPS_ENOUGH:
        return None
    sample = data.x_train[np.random.default_rng(0).permutation(len(data.x_train))[:BN_SAMPLE]]

    class Reestimate(k.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            reestimate_batchnorm(self.model, sample)
            if logs is not None and "val_loss" in logs:
                values = self.model.evaluate(data.x_val, self.val_y, verbose=0, return_dict=True)
                logs.update({f"val_{name}": value for name, value in values.items()})

    callback = Reestimate()
    return callback


def train(spec: ModelSpec, data: Dataset, width: float, epochs: int, seed: int, out_path: Path,
          depth: int | None = None, teacher_path: Path | None = None) -> TrainResult:
    k = tfenv.keras()
    seed_everything(seed)
    y_train, y_val = data.y_train, data.y_val
    bridge = None
    if spec.source:  # a user's model: made (and a Keras 3 file's copy proved) here
        from pipeline.model import user_model

        made, bridge = user_model.make_checked(spec, data, width, depth)
    else:  # a zoo classifier's output layer follows the data's classes
        made = spec.make(width, depth, len(data.labels) if data.task == "classification" else None)
    if spec.pretrained:  # its weights are kept: pruning and QAT fine-tune from them
        model = compile_model(made, spec, spec.learning_rate)
        _, val = model.evaluate(data.x_val, data.y_val, verbose=0)
        _save(model, out_path)
        return TrainResult(0, float(val), int(model.count_params()), bridge, True)
    if teacher_path is not None:
        y_train, y_val = distillation_targets(teacher_path, data)
        model = compile_distilled(made, spec, y_train.shape[1] // 2)
    else:
        model = compile_model(made, spec, spec.learning_rate)
    monitor = monitored_metric(spec)
    stop = k.callbacks.EarlyStopping(
        monitor=monitor, mode="max" if spec.task == "classification" else "min",
        patience=8, restore_best_weights=True,
    )
    callbacks = [stop]
    bn = _batchnorm_callback(k, model, data, spec.batch_size)
    if bn is not None:  # before the early stopping, so it reads the re-estimated validation figures
        bn.val_y = y_val
        callbacks.insert(0, bn)
    history = model.fit(
        data.x_train, y_train, validation_data=(data.x_val, y_val),
        epochs=epochs, batch_size=spec.batch_size, callbacks=[*callbacks, *progress("train", epochs)],
        verbose=keras_verbosity(),
    )
    if teacher_path is not None:  # saved with the usual loss, so later stages load it like any trained model
        compile_model(model, spec, spec.learning_rate)
    _save(model, out_path)
    best = max(history.history[monitor]) if spec.task == "classification" else min(history.history[monitor])
    return TrainResult(epochs_run=len(history.history[monitor]), val_metric=float(best), params=int(model.count_params()),
                       bridge=bridge)


def _save(model, out_path: Path) -> None:
    tfenv.save_model(model, out_path)
