"""Each bad input: a one-line cause naming what is wrong, a non-zero exit, no traceback, no report."""
import shutil

import numpy as np
import pytest

from conftest import assert_clean_error, run_invoke
from pipeline.model import tfenv


def _convert(model, int8: bool, representative=True):
    tf = tfenv.tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if representative:
            shape = (1,) + tuple(model.input_shape[1:])
            converter.representative_dataset = lambda: ([np.random.rand(*shape).astype("float32")] for _ in range(20))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def odd_models(tmp_path_factory):
    """Real .tflite files that generate must refuse: float, hybrid (weights-only int8), and one with an op TFLM lacks."""
    k, tf = tfenv.keras(), tfenv.tf()
    folder = tmp_path_factory.mktemp("models")
    dense = k.Sequential([k.layers.Input((16,)), k.layers.Dense(8, activation="relu"), k.layers.Dense(4)])
    (folder / "float.tflite").write_bytes(_convert(dense, int8=False))
    (folder / "hybrid.tflite").write_bytes(_convert(dense, int8=True, representative=False))
    inp = k.layers.Input((16,))
    top = k.layers.Lambda(lambda t: tf.math.top_k(t, k=4).values)(k.layers.Dense(16)(inp))
    (folder / "topk.tflite").write_bytes(_convert(k.Model(inp, top), int8=True))
    return folder


def test_unknown_board_lists_the_valid_names():
    line = assert_clean_error(run_invoke("generate", "--board=esp8266"), "unknown board 'esp8266'")
    for name in ("esp32", "esp32s3", "nano33ble", "nucleo-l4r5zi", "rp2040"):
        assert name in line


def test_unknown_model_lists_the_zoo():
    assert_clean_error(run_invoke("train", "--model=lenet"), "unknown model 'lenet'", "ds_cnn")


@pytest.mark.parametrize("mutation, field", [
    (lambda t: t.replace("clock_mhz = 240\n", ""), "clock_mhz"),
    (lambda t: t.replace("ram_bytes = 327680", 'ram_bytes = "lots"'), "ram_bytes"),
    (lambda t: t.replace('runners = ["esptool"]', "runners = 3"), "runners"),
    (lambda t: t.replace("[serial]", "[serial"), "not valid TOML"),
])
def test_malformed_board_file_names_the_field(tmp_path, esp32_build, mutation, field):
    from pipeline.boards import BOARDS_DIR

    board = tmp_path / "myboard.toml"
    board.write_text(mutation((BOARDS_DIR / "esp32.toml").read_text()))
    tflite = esp32_build["dir"] / "model.tflite"
    assert_clean_error(run_invoke("generate", f"--tflite={tflite}", f"--board={board}",
                                  f"--build-dir={tmp_path / 'b'}"), str(board), field)


def test_missing_tflite(tmp_path):
    build_dir = tmp_path / "b"
    assert_clean_error(run_invoke("generate", f"--tflite={tmp_path / 'nope.tflite'}", f"--build-dir={build_dir}"),
                       "does not exist")
    assert not build_dir.exists()  # a refused input leaves no folders behind


@pytest.mark.parametrize("content", [b"", b"not a flatbuffer at all", None])
def test_corrupt_tflite(tmp_path, esp32_build, content):
    bad = tmp_path / "bad.tflite"
    if content is None:  # a real model cut in half keeps its header but not its tables
        content = (esp32_build["dir"] / "model.tflite").read_bytes()[:2000]
    bad.write_bytes(content)
    proc = run_invoke("generate", f"--tflite={bad}", f"--build-dir={tmp_path / 'b'}")
    assert_clean_error(proc, str(bad))
    assert not list((tmp_path / "b").rglob("report.json"))


@pytest.mark.parametrize("name", ["float", "hybrid"])
def test_float_or_hybrid_tflite_is_refused(odd_models, tmp_path, name):
    proc = run_invoke("generate", f"--tflite={odd_models / (name + '.tflite')}", f"--build-dir={tmp_path}")
    assert_clean_error(proc, "not full-integer", "FLOAT32")


def test_op_tflm_lacks_is_named(odd_models, tmp_path):
    proc = run_invoke("generate", f"--tflite={odd_models / 'topk.tflite'}", f"--build-dir={tmp_path}")
    assert_clean_error(proc, "TOPK_V2", "MicroMutableOpResolver")
    assert not list(tmp_path.rglob("model_ops.h"))


def test_model_that_does_not_fit_states_the_numbers(esp32_build, tmp_path):
    from pipeline.boards import BOARDS_DIR

    board = tmp_path / "tiny.toml"
    board.write_text((BOARDS_DIR / "esp32.toml").read_text().replace('name = "esp32"', 'name = "tiny"')
                     .replace("flash_bytes = 3145728", "flash_bytes = 299008")
                     .replace("ram_bytes = 327680", "ram_bytes = 20000"))
    proc = run_invoke("generate", f"--tflite={esp32_build['dir'] / 'model.tflite'}", f"--board={board}",
                      f"--build-dir={tmp_path / 'b'}")
    line = assert_clean_error(proc, "does not fit tiny", "flash", "RAM", "--width")
    assert "292.00 KiB" not in line and "292.0 KiB" in line  # the budget, in KiB
    assert not (tmp_path / "b" / "tiny" / "model" / "report.json").exists()


def test_dataset_of_the_wrong_shape_names_the_expected_one(tmp_path):
    data = tmp_path / "wrong.npz"
    np.savez(data, x_train=np.zeros((20, 28, 28)), y_train=np.zeros(20, int), x_test=np.zeros((5, 28, 28)),
             y_test=np.zeros(5, int))
    assert_clean_error(run_invoke("train", f"--data={data}", f"--build-dir={tmp_path}"),
                       "(20, 28, 28)", "(N, 8, 8, 1)")


def test_labels_outside_the_models_classes(tmp_path):
    """A zoo model's output layer is sized to the data's classes (0..18: 19), so a negative label is what is out."""
    data = tmp_path / "labels.npz"
    np.savez(data, x_train=np.zeros((20, 8, 8, 1)), y_train=np.arange(20) - 1, x_test=np.zeros((5, 8, 8, 1)),
             y_test=np.zeros(5, int))
    assert_clean_error(run_invoke("train", f"--data={data}", f"--build-dir={tmp_path}"), "-1..18", "19 classes")


def test_labels_beyond_the_names_given(tmp_path):
    data = tmp_path / "labels.npz"
    np.savez(data, x_train=np.zeros((20, 8, 8, 1)), y_train=np.arange(20) % 4, x_test=np.zeros((5, 8, 8, 1)),
             y_test=np.zeros(5, int), labels=np.array(["a", "b", "c"]))
    assert_clean_error(run_invoke("train", f"--data={data}", f"--build-dir={tmp_path}"), "labels up to 3",
                       "3 names")


@pytest.mark.parametrize("bad, what", [(np.nan, "NaN"), (np.inf, "infinite")])
def test_dataset_with_nan_or_infinity_names_the_values(tmp_path, bad, what):
    data = tmp_path / "bad.npz"
    x_train = np.random.default_rng(0).random((20, 8, 8, 1))
    x_train[3, 2, 2, 0] = bad
    np.savez(data, x_train=x_train, y_train=np.arange(20) % 10, x_test=np.zeros((5, 8, 8, 1)),
             y_test=np.zeros(5, int))
    assert_clean_error(run_invoke("train", f"--data={data}", f"--build-dir={tmp_path}"),
                       str(data), "x_train", what, "example 3")


@pytest.mark.parametrize("task, option", [("build", "--epochs=abc"), ("optimize", "--sparsity=half"),
                                          ("measure", "--runs=ten"), ("generate", "--width=wide")])
def test_non_numeric_option_is_one_line(tmp_path, task, option):
    assert_clean_error(run_invoke(task, option, f"--build-dir={tmp_path}"), option.split("=")[0],
                       repr(option.split("=")[1]))


def test_failed_build_keeps_the_last_good_report(esp32_build, tmp_path):
    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir)
    report = build_dir / "esp32" / "digits" / "report.json"
    good = report.read_text()
    assert_clean_error(run_invoke("build", "--board=esp32", "--data=nosuch.npz", f"--build-dir={build_dir}"),
                       "nosuch.npz")
    assert report.read_text() == good


def test_zoo_model_without_bundled_data_asks_for_data():
    assert_clean_error(run_invoke("train", "--model=resnet8"), "--data", "(32, 32, 3)")


@pytest.mark.parametrize("option", ["--sparsity=1.5", "--epochs=0", "--width=0"])
def test_out_of_range_options(option):
    assert_clean_error(run_invoke("optimize", option), option.split("=")[0])


def test_accuracy_drop_over_the_limit_fails():
    from pipeline.errors import PipelineError
    from pipeline.model.validate import Metrics, check_drop

    metrics = Metrics("accuracy", float_metric=97.0, int8_metric=93.5, tflm_metric=93.5, max_output_diff=0,
                      test_examples=270)
    assert check_drop(metrics, 4.0, np.zeros(1)) == pytest.approx(3.5)
    with pytest.raises(PipelineError, match=r"3\.50 points.*--max-drop=2"):
        check_drop(metrics, 2.0, np.zeros(1))
    regression = Metrics("mae", float_metric=0.08, int8_metric=0.12, tflm_metric=0.12, max_output_diff=0,
                         test_examples=200)
    targets = np.array([-1.0, 1.0])  # range 2: the 0.04 MAE increase is 2% of it
    assert check_drop(regression, 2.5, targets) == pytest.approx(2.0)
    with pytest.raises(PipelineError, match="MAE"):
        check_drop(regression, 1.0, targets)
