"""Stages 2 and 3: magnitude pruning to a target sparsity, then sparsity-preserving quantization-aware training.

Pruning wraps the prunable layers, ramps sparsity up on a polynomial schedule while fine-tuning, and is
stripped afterwards. QAT then uses tfmot's Default8BitPrunePreserveQuantizeScheme, which keeps the zeros
that pruning made; the plain QAT scheme would let them grow back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.model import tfenv
from pipeline.model.datasets import Dataset
from pipeline.model.zoo import ModelSpec
from pipeline.model.train import compile_distilled, compile_model, distillation_targets, keras_verbosity, progress, seed_everything


@dataclass
class OptimizeResult:
    sparsity_target: float
    keras_sparsity: float  # zeros among the pruned kernels of the Keras model, before int8 conversion
    prune_epochs: int
    qat_epochs: int
    qat: bool
    prune: str = "magnitude"
    # Structured pruning: output channels of the Conv2D/Dense layers and parameters, before and after.
    channels_before: int | None = None
    channels_after: int | None = None
    params_before: int | None = None
    params_after: int | None = None
    groups_left: list[str] | None = None  # channel groups structured pruning left as they are, and why


def fine_tune_epochs(epochs: int) -> tuple[int, int]:
    """Pruning and QAT fine-tune for a fraction of the training epochs, at least one each."""
    return max(1, math.ceil(epochs / 4)), max(1, math.ceil(epochs / 8))


def kernel_sparsity(model) -> float:
    """Fraction of exact zeros over the kernels of the layers pruning acts on."""
    zeros = total = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # QAT wraps layers
        for name in ("kernel", "depthwise_kernel"):
            weight = getattr(inner, name, None)
            if weight is not None:
                values = np.asarray(weight.numpy())
                zeros += int(np.sum(values == 0))
                total += values.size
    return zeros / total if total else 0.0


def _targets(model, spec: ModelSpec, data: Dataset, learning_rate: float, teacher_path: Path | None):
    """Compile for fine-tuning: on the labels, or distilled from a teacher (labels and its softened outputs)."""
    if teacher_path is None:
        compile_model(model, spec, learning_rate)
        return data.y_train, data.y_val
    y_train, y_val = distillation_targets(teacher_path, data)
    compile_distilled(model, spec, y_train.shape[1] // 2)
    return y_train, y_val


def prune(model, spec: ModelSpec, data: Dataset, sparsity: float, epochs: int, teacher_path: Path | None = None):
    tfmot = tfenv.tfmot()
    steps_per_epoch = max(1, math.ceil(len(data.x_train) / spec.batch_size))
    total_steps = steps_per_epoch * epochs
    # Reach the target a little before the end so the last steps fine-tune at full sparsity; the final mask
    # update must land exactly on end_step, so end_step is a multiple of the update frequency.
    end_step = max(1, int(total_steps * 0.8))
    frequency = max(1, end_step // 20)
    end_step = frequency * (end_step // frequency)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=end_step, frequency=frequency
    )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    y_train, y_val = _targets(pruned, spec, data, spec.learning_rate / 2, teacher_path)
    pruned.fit(
        data.x_train, y_train, validation_data=(data.x_val, y_val), epochs=epochs,
        batch_size=spec.batch_size, callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), *progress("prune", epochs)], verbose=keras_verbosity(),
    )
    return tfmot.sparsity.keras.strip_pruning(pruned)


def quantization_aware(model, spec: ModelSpec, data: Dataset, epochs: int):
    tfmot = tfenv.tfmot()
    annotated = tfmot.quantization.keras.quantize_annotate_model(model)
    qat_model = tfmot.quantization.keras.quantize_apply(
        annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    )
    compile_model(qat_model, spec, spec.learning_rate / 10)
    qat_model.fit(
        data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
        batch_size=spec.batch_size, verbose=keras_verbosity(), callbacks=progress("QAT", epochs),
    )
    return qat_model


def prune_channels(model, spec: ModelSpec, data: Dataset, fraction: float, epochs: int,
                   teacher_path: Path | None = None):
    """Structured pruning (pipeline.model.structured), then fine-tuning of the smaller model to recover accuracy."""
    from pipeline.model import structured

    smaller, figures = structured.prune(model, fraction)
    y_train, y_val = _targets(smaller, spec, data, spec.learning_rate / 2, teacher_path)
    smaller.fit(data.x_train, y_train, validation_data=(data.x_val, y_val), epochs=epochs,
                batch_size=spec.batch_size, verbose=keras_verbosity(), callbacks=progress("fine-tune", epochs))
    return smaller, figures


def optimize(float_path: Path, out_path: Path, spec: ModelSpec, data: Dataset, sparsity: float, qat: bool,
             epochs: int, seed: int, kind: str = "magnitude", teacher_path: Path | None = None) -> OptimizeResult:
    """teacher_path: distil from this model while the pruning fine-tunes (a brought model teaching its pruned self)."""
    seed_everything(seed)
    # A brought pretrained model: --epochs is the fine-tuning itself (the weights are kept, not retrained).
    prune_epochs, qat_epochs = ((epochs, max(1, math.ceil(epochs / 2))) if spec.pretrained
                                else fine_tune_epochs(epochs))
    model = tfenv.load_model(float_path)
    if spec.pretrained:
        # Fine-tuning a brought model for a few epochs: its batch norms keep their statistics (inference mode),
        # as in Keras' transfer-learning guide; a few hundred steps of momentum-0.99 updates would leave them
        # stale after pruning (seen: validation accuracy 0.56 while training accuracy reached 0.92).
        for layer in model.layers:
            if type(layer).__name__ == "BatchNormalization":
                layer.trainable = False
    figures = None
    if sparsity > 0 and kind == "structured":
        # Removing channels takes more recovery than zeroing weights: fine-tune twice as long.
        model, figures = prune_channels(model, spec, data, sparsity, 2 * prune_epochs, teacher_path)
        prune_epochs *= 2
    elif sparsity > 0:
        model = prune(model, spec, data, sparsity, prune_epochs, teacher_path)
    if teacher_path is not None:
        compile_model(model, spec, spec.learning_rate)  # saved with the usual loss, like every optimized model
    measured = kernel_sparsity(model)
    if qat:
        model = quantization_aware(model, spec, data, qat_epochs)
    tfenv.save_model(model, out_path)
    extra = {} if figures is None else {"channels_before": figures.channels_before, "channels_after":
                                        figures.channels_after, "params_before": figures.params_before,
                                        "params_after": figures.params_after, "groups_left": figures.left}
    return OptimizeResult(sparsity, measured, prune_epochs if sparsity > 0 else 0, qat_epochs if qat else 0, qat,
                          kind, **extra)
