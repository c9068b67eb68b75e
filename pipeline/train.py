"""Stage 1: train the float model, seeded, with early stopping on the validation split."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline import tfenv
from pipeline.datasets import Dataset
from pipeline.models import ModelSpec


@dataclass
class TrainResult:
    epochs_run: int
    val_metric: float
    params: int


QUIET = False  # `invoke explore` prints one line a trial instead of Keras's per-epoch lines


def keras_verbosity() -> int:
    """A progress bar on a terminal; one line per epoch in logs and CI, where a bar is unreadable."""
    if QUIET:
        return 0
    return 1 if sys.stdout.isatty() and not os.environ.get("CI") else 2


def compile_model(model, spec: ModelSpec, learning_rate: float):
    k = tfenv.keras()
    if spec.task == "classification":
        loss, metrics = k.losses.SparseCategoricalCrossentropy(), ["accuracy"]
    else:
        loss, metrics = k.losses.MeanSquaredError(), ["mae"]
    model.compile(optimizer=k.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
    return model


def monitored_metric(spec: ModelSpec) -> str:
    return "val_accuracy" if spec.task == "classification" else "val_mae"


def seed_everything(seed: int) -> None:
    """Same seed, same weights: seeds Python, NumPy and TF, and makes TF's kernels deterministic (without
    it, multi-threaded reductions make two runs with one seed differ)."""
    tfenv.keras().utils.set_random_seed(seed)
    tfenv.tf().config.experimental.enable_op_determinism()


def train(spec: ModelSpec, data: Dataset, width: float, epochs: int, seed: int, out_path: Path,
          depth: int | None = None) -> TrainResult:
    k = tfenv.keras()
    seed_everything(seed)
    model = compile_model(spec.make(width, depth), spec, spec.learning_rate)
    monitor = monitored_metric(spec)
    stop = k.callbacks.EarlyStopping(
        monitor=monitor, mode="max" if spec.task == "classification" else "min",
        patience=8, restore_best_weights=True,
    )
    history = model.fit(
        data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
        epochs=epochs, batch_size=spec.batch_size, callbacks=[stop], verbose=keras_verbosity(),
    )
    tmp = out_path.with_name(out_path.name + ".tmp.h5")
    model.save(tmp)
    tmp.replace(out_path)
    best = max(history.history[monitor]) if spec.task == "classification" else min(history.history[monitor])
    return TrainResult(epochs_run=len(history.history[monitor]), val_metric=float(best), params=int(model.count_params()))
