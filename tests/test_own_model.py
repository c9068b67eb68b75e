"""Your own model through the pipeline: Keras 3 and tf-keras files, a builder .py, the bridge's proof, refusals,
structured pruning on any graph. The models are made and saved by the tests themselves (in tmp_path)."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO, assert_clean_error, run_invoke


def _zero_removed_channels(model, plan, producers=("Conv1D", "Conv2D", "Dense")):
    for layer in model.layers:
        group = plan.out_group.get(layer.name)
        if type(layer).__name__ in producers and len(plan.keep.get(group, [])) < plan.size.get(group, 0):
            weights = layer.get_weights()
            drop = np.setdiff1d(np.arange(plan.size[group]), plan.keep[group])
            weights[0][..., drop] = 0
            if len(weights) > 1:
                weights[1][drop] = 0
            layer.set_weights(weights)
        group = plan.in_group.get(layer.name)
        if type(layer).__name__ == "BatchNormalization" and len(plan.keep.get(group, [])) < plan.size.get(group, 0):
            gamma, beta, mean, var = layer.get_weights()  # zero in, zero out for the removed channels
            drop = np.setdiff1d(np.arange(plan.size[group]), plan.keep[group])
            beta[drop], mean[drop] = 0, 0
            layer.set_weights([gamma, beta, mean, var])


def test_structured_pruning_is_exact_on_a_graph_with_concatenate_separable_conv1d_and_a_reshape():
    """Concatenate, a split SeparableConv2D, global pooling, Conv1D and a Reshape that fixes a channel count:
    zeroing the removed channels gives the same outputs as the smaller model; the Reshape's group is listed."""
    from pipeline.model import structured, tfenv

    k = tfenv.keras()
    L = k.layers
    inp = L.Input((8, 8, 1))
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="a")(inp)
    b = L.Conv2D(6, 3, padding="same", activation="relu", name="b")(inp)
    x = L.Concatenate(name="cat")([a, b])
    x = L.BatchNormalization(name="bn")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="sep_depthwise")(x)
    x = L.Conv2D(12, 1, name="sep")(x)
    x = L.ReLU(6.0)(x)
    y = L.Conv2D(4, 3, padding="same", name="to_reshape")(x)
    y = L.Reshape((64, 4), name="reshape")(y)
    y = L.Conv1D(10, 3, name="c1")(y)
    y = L.GlobalAveragePooling1D()(y)
    g = L.GlobalMaxPooling2D()(x)
    out = L.Dense(5, activation="softmax", name="head")(L.Concatenate()([g, y]))
    model = k.Model(inp, out)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial batch norm statistics
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    plan = structured.plan(model, 0.5)
    assert any("to_reshape" in why and "Reshape 'reshape'" in why for why in plan.left), plan.left
    _zero_removed_channels(model, plan)
    smaller = structured.apply(model, plan)
    x = rng.random((4, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), smaller.predict(x, verbose=0), atol=1e-5)
    filters = {l.name: getattr(l, "filters", None) for l in smaller.layers}
    assert filters["a"] == 4 and filters["b"] == 3 and filters["sep"] == 6 and filters["c1"] == 5
    assert filters["to_reshape"] == 4  # left: the Reshape depends on its 4 channels
