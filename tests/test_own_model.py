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


# -- models the tests make and save themselves, as a user would (Keras 3 in its own process) ---------------------
MAKE_MODELS = '''
import sys
import numpy as np
from sklearn.datasets import load_digits
out = sys.argv[1]
d = load_digits()
x = (d.images / 16.0).astype("float32")[..., None]
y = d.target.astype("int64")
order = np.random.default_rng(0).permutation(len(x))
x, y = x[order], y[order]
np.savez(f"{out}/digits.npz", x_train=x[:1400], y_train=y[:1400], x_test=x[1400:], y_test=y[1400:])
np.savez(f"{out}/wrong_shape.npz", x_train=x[:100, :, :6], y_train=y[:100], x_test=x[1400:1450, :, :6], y_test=y[1400:1450])

import keras
from keras import layers as L
keras.utils.set_random_seed(0)
i = keras.Input((8, 8, 1), name="pixels")
a = L.Conv2D(32, 3, padding="same", use_bias=False, name="stem_conv")(i)
a = L.BatchNormalization(name="stem_bn")(a)
a = L.ReLU(max_value=6.0, name="stem_relu6")(a)
b = L.SeparableConv2D(32, 3, padding="same", use_bias=False, name="res_sep")(a)
b = L.BatchNormalization(name="res_bn")(b)
a = L.Activation("relu6", name="res_relu6")(L.Add(name="res_add")([a, b]))
a = L.GlobalAveragePooling2D(name="gap")(a)
a = L.Dense(32, activation="relu", name="hidden")(a)
o = L.Dense(10, activation="softmax", name="head")(a)
m = keras.Model(i, o, name="resnet_user")
m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
m.fit(x[:1400], y[:1400], epochs=40, batch_size=32, verbose=0)
m.save(f"{out}/functional.keras")

s = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(16, 3, activation="relu", name="seq_conv"),
                      L.MaxPooling2D(name="seq_pool"), L.Flatten(name="seq_flat"),
                      L.Dense(32, activation="relu", name="seq_hidden"), L.Dense(10, activation="softmax", name="seq_head")])
s.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
s.fit(x[:1400], y[:1400], epochs=20, batch_size=32, verbose=0)
s.save(f"{out}/sequential.h5")

keras.Sequential([keras.Input((8, 8)), L.LSTM(8, name="recurrent"), L.Dense(10)]).save(f"{out}/lstm.keras")
lam = keras.Sequential([keras.Input((8, 8, 1)), L.Lambda(lambda t: t * 2.0, name="doubler"), L.Flatten(),
                        L.Dense(10)])
lam.save(f"{out}/lambda.keras")

keras.Sequential([keras.Input((8, 8, 1)), L.Rescaling(2.0, offset=-1.0, name="to_pm1"),
                  L.Conv2D(8, 3, name="first_conv"), L.Flatten(), L.Dense(10, activation="softmax")]).save(f"{out}/fold.keras")
# Keras 3's hard_sigmoid is relu6(x + 3) / 6, tf_keras's is clip(0.2 x + 0.5): the same name, other numbers.
keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), L.Dense(16, name="pre"),
                  L.Activation("hard_sigmoid", name="hsig"), L.Dense(10, name="out")]).save(f"{out}/hsig.keras")

@keras.saving.register_keras_serializable(package="mine")
class Scale(L.Layer):
    def call(self, t):
        return t * 3.0
keras.Sequential([keras.Input((8, 8, 1)), Scale(name="my_scale"), L.Flatten(), L.Dense(10)]).save(f"{out}/custom.keras")
'''

MAKE_TF_KERAS = '''
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tf_keras as keras
out = sys.argv[1]
data = np.load(f"{out}/digits.npz")
keras.utils.set_random_seed(0)
L = keras.layers
m = keras.Sequential([L.Input((8, 8, 1)), L.Conv2D(16, 3, padding="same", activation="relu", name="k2_conv"),
                      L.MaxPooling2D(name="k2_pool"), L.Conv2D(16, 3, activation="relu", name="k2_conv2"),
                      L.Flatten(name="k2_flat"), L.Dense(10, activation="softmax", name="k2_head")], name="k2")
m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
m.fit(data["x_train"], data["y_train"], epochs=20, batch_size=32, verbose=0)
m.save(f"{out}/tfkeras.h5")
'''

BUILDER = '''
"""A builder used by the tests: tf_keras layers, width and depth knobs."""
import tf_keras as keras

EPOCHS = 15
LEARNING_RATE = 2e-3
DEPTH_RANGE = (1, 3)


def build_model(input_shape, num_classes, width=1.0, depth=2):
    L = keras.layers
    inputs = L.Input(input_shape)
    x = inputs
    for i in range(depth):
        x = L.Conv2D(max(2, int(16 * width)), 3, padding="same", activation="relu", name=f"block{i}")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten()(x)
    x = L.Dense(max(4, int(32 * width)), activation="relu", name="hidden")(x)
    return keras.Model(inputs, L.Dense(num_classes, activation="softmax", name="classes")(x), name="built")
'''


@pytest.fixture(scope="module")
def user_models(tmp_path_factory):
    out = tmp_path_factory.mktemp("user_models")
    for script in (MAKE_MODELS, MAKE_TF_KERAS):
        proc = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "builder.py").write_text(BUILDER)
    (out / "no_function.py").write_text("import math\n\ndef make(shape):\n    return None\n")
    return out


# -- refusals: one line naming the layer, the shapes, the contract; no TensorFlow needed ---------------------------
def test_an_lstm_is_refused_naming_the_layer_and_what_to_use(user_models, tmp_path):
    proc = run_invoke("build", f"--model={user_models / 'lstm.keras'}", f"--data={user_models / 'digits.npz'}",
                      f"--build-dir={tmp_path}")
    assert_clean_error(proc, "layer 'recurrent' (LSTM)", "Conv1D")


def test_a_lambda_or_custom_layer_runs_no_code_unless_trusted(user_models, tmp_path):
    data = f"--data={user_models / 'digits.npz'}"
    proc = run_invoke("build", f"--model={user_models / 'lambda.keras'}", data, f"--build-dir={tmp_path}")
    assert_clean_error(proc, "layer 'doubler' (Lambda)", "--trust-model")
    proc = run_invoke("build", f"--model={user_models / 'custom.keras'}", data, f"--build-dir={tmp_path}")
    assert_clean_error(proc, "layer 'my_scale'", "mine>Scale", "--trust-model")
    # Trusted, the Lambda is still no layer the bridge can translate: named, with what to use instead.
    proc = run_invoke("build", f"--model={user_models / 'lambda.keras'}", data, "--trust-model", f"--build-dir={tmp_path}")
    assert_clean_error(proc, "layer 'doubler' (Lambda)", "built-in layers")
    assert not (tmp_path / "_models").exists()  # refused before anything trained


def test_a_shape_mismatch_names_both_shapes(user_models, tmp_path):
    proc = run_invoke("build", f"--model={user_models / 'functional.keras'}",
                      f"--data={user_models / 'wrong_shape.npz'}", f"--build-dir={tmp_path}")
    assert_clean_error(proc, "(8, 6, 1)", "(8, 8, 1)")


def test_a_builder_without_the_function_says_what_it_must_define(user_models, tmp_path):
    proc = run_invoke("train", f"--model={user_models / 'no_function.py'}", f"--data={user_models / 'digits.npz'}",
                      f"--build-dir={tmp_path}")
    assert_clean_error(proc, "must define build_model(input_shape, num_classes")


def test_a_model_file_needs_data_and_has_no_width_knob(user_models, tmp_path):
    model = f"--model={user_models / 'functional.keras'}"
    assert_clean_error(run_invoke("train", model, f"--build-dir={tmp_path}"), "pass --data")
    assert_clean_error(run_invoke("train", model, f"--data={user_models / 'digits.npz'}", "--width=0.5",
                                  f"--build-dir={tmp_path}"), "--width", "no width knob")


# -- through the whole pipeline: build for esp32, int8 within the drop limit, emulated + measured bit-exact ---------
CASES = {  # file, a layer name the profile must show, options
    "keras3-functional": ("functional.keras", "res_sep", ()),
    "keras3-sequential-h5": ("sequential.h5", "seq_conv", ()),
    "tf-keras-h5": ("tfkeras.h5", "k2_conv", ()),
    "builder": ("builder.py", "block1", ("--width=0.75", "--depth=2")),
}


@pytest.mark.slow
@pytest.mark.parametrize("prune", ["magnitude", "structured"])
@pytest.mark.parametrize("case", list(CASES))
def test_own_model_builds_for_esp32_and_measures_bit_exact(user_models, tmp_path, case, prune):
    from pipeline import boards
    from pipeline.hil.emulate import Serving, device_for_build
    from pipeline.hil.measure import MeasureOptions, measure

    name, layer, extra = CASES[case]
    data = str(user_models / "digits.npz")
    sparsity = "0.3" if prune == "magnitude" else "0.25"  # small models: the drop limit holds at these
    proc = run_invoke("build", f"--model={user_models / name}", f"--data={data}", "--board=esp32",
                      f"--prune={prune}", f"--sparsity={sparsity}", "--epochs=10", "--max-drop=3",
                      f"--build-dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stem = name.rsplit(".", 1)[0]
    folder = tmp_path / "esp32" / stem
    report = json.loads((folder / "report.json").read_text())
    brought = report["brought"]
    assert brought["pretrained"] == (case != "builder")
    assert report["tflm_metric"] >= report["float_metric"] - 3
    if case.startswith("keras3"):  # the bridge's copy was proved against Keras 3 on the data
        assert brought["bridge_max_diff"] <= 1e-5 and "Keras 3" in brought["bridge_proof"]
        assert "bridge to tf_keras: max output diff" in proc.stdout
    if brought["pretrained"]:
        assert "as brought vs deployed" in proc.stdout
    # The stage folder is keyed on the file's content.
    digest = __import__("hashlib").sha256((user_models / name).read_bytes()).hexdigest()[:8]
    assert (tmp_path / "_models" / f"{stem}-{digest}").is_dir()
    if prune == "structured":
        assert report["pruning"]["pruned"]["macs"] < report["pruning"]["unpruned"]["macs"]
    # The profile's rows are named after the user's layers.
    assert layer in (folder / "profile.md").read_text()
    board = boards.load_board("esp32")
    with Serving(device_for_build(tmp_path, board, stem)) as port:
        result = measure(MeasureOptions(board="esp32", model=stem, port=port, build_dir=tmp_path, data=data,
                                        runs=2, inputs=20, timeout=5.0, out_dir=tmp_path / "m"), log=lambda _: None)
    assert result["source"] == "emulated" and result["bit_exact"] == 20


@pytest.mark.slow
def test_a_pretrained_file_converts_as_brought_with_epochs_0_and_the_cache_keys_on_content(user_models, tmp_path):
    import shutil

    model = tmp_path / "mine.h5"
    shutil.copy(user_models / "sequential.h5", model)
    args = ("convert", f"--model={model}", f"--data={user_models / 'digits.npz'}", "--epochs=0",
            f"--build-dir={tmp_path / 'b'}")
    proc = run_invoke(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "converted as brought (post-training int8" in proc.stdout
    out = json.loads(proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1])
    assert out["validate"]["tflm_metric"] >= out["validate"]["float_metric"] - 2
    repeat = run_invoke(*args).stdout
    assert "[1/8] train: up to date" in repeat and "train: done" not in repeat  # same content: stages reused
    # Same name, other content: new stage folders, nothing reused.
    shutil.copy(user_models / "tfkeras.h5", model)
    again = run_invoke(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[1/8] train: done" in again.stdout
    assert len(list((tmp_path / "b" / "_models").iterdir())) == 2


@pytest.mark.slow
def test_explore_searches_a_builders_knobs_and_what_applies_to_a_model_file(user_models, tmp_path):
    data = f"--data={user_models / 'digits.npz'}"
    proc = run_invoke("explore", f"--model={user_models / 'builder.py'}", data, "--board=nano33ble", "--trials=3",
                      "--epochs=3", f"--build-dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trials = json.loads((tmp_path / "nano33ble" / "builder" / "explore" / "trials.json").read_text())["trials"]
    assert len(trials) == 3 and all(t["params"]["depth"] in (1, 2, 3) for t in trials)
    assert len({(t["params"]["width"], t["params"]["depth"]) for t in trials}) > 1
    proc = run_invoke("explore", f"--model={user_models / 'sequential.h5'}", data, "--board=nano33ble", "--trials=2",
                      "--epochs=2", f"--build-dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trials = json.loads((tmp_path / "nano33ble" / "sequential" / "explore" / "trials.json").read_text())["trials"]
    assert all(t["params"]["width"] == 1.0 and t["params"]["depth"] is None for t in trials)
    assert all(t["params"]["teacher"] in (None, "brought") for t in trials)
    assert "build it: invoke build --board=nano33ble --model=" in proc.stdout


def test_a_copy_that_differs_from_the_keras3_original_names_the_first_differing_layer(user_models, tmp_path):
    """The bridge proves its copy on the data: an activation whose numbers differ between Keras 3 and tf_keras is
    caught, named, and nothing is written."""
    proc = run_invoke("train", f"--model={user_models / 'hsig.keras'}", f"--data={user_models / 'digits.npz'}",
                      "--epochs=0", f"--build-dir={tmp_path}")
    assert_clean_error(proc, "first layer whose outputs differ is 'hsig' (Activation, max diff")
    assert not list(tmp_path.rglob("float.h5"))


def test_a_rescaling_folds_into_the_next_convolution_so_qat_applies(user_models, tmp_path):
    proc = run_invoke("train", f"--model={user_models / 'fold.keras'}", f"--data={user_models / 'digits.npz'}",
                      "--epochs=0", f"--build-dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    bridge = json.loads(proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1])["bridge"]
    assert bridge["qat_unsupported"] is None and bridge["max_diff"] <= 1e-5
    from pipeline.model import tfenv

    model = tfenv.load_model(next(tmp_path.rglob("float.h5")))
    assert [type(l).__name__ for l in model.layers if type(l).__name__ == "Rescaling"] == []
