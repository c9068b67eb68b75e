"""A classifier's outputs follow the data's classes: a zoo model's output layer is sized to them, < 2 is refused."""
import json

import pytest

from conftest import assert_clean_error, run_invoke
from pipeline.model import zoo
from pipeline.target import tflite_model
from test_datasets import make_image_folder


@pytest.mark.parametrize("name", [n for n, s in zoo.ZOO.items() if s.task == "classification"])
def test_every_zoo_classifier_sizes_its_output_layer_to_the_classes(name):
    spec = zoo.ZOO[name]
    assert spec.make(0.25 if name != "digits" else 1.0, spec.depth_range[0], classes=3).output_shape[-1] == 3
    assert spec.make(0.25 if name != "digits" else 1.0, spec.depth_range[0]).output_shape[-1] == spec.num_classes


def test_one_class_folder_is_refused(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", ["only"], per_class=5)
    proc = run_invoke("build", f"--data={folder}", "--epochs=1", f"--build-dir={tmp_path / 'b'}")
    assert_clean_error(proc, str(folder), "1 class", "at least 2")
    assert not list((tmp_path / "b").rglob("report.json"))


def test_three_class_folder_gives_a_three_output_model_labelled_by_the_folders(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", ["a", "b", "c"], per_class=8)
    build = tmp_path / "b"
    proc = run_invoke("generate", f"--data={folder}", "--epochs=1", "--sparsity=0", "--no-qat", "--max-drop=100",
                      f"--build-dir={build}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = build / "esp32" / "digits"
    info = tflite_model.read(out / "model.tflite")
    assert list(info.outputs[0].shape) == [1, 3]
    settings = (out / "generated" / "model_settings.cc").read_text() + (out / "generated" / "model_settings.h").read_text()
    assert '"a", "b", "c"' in settings and "class3" not in settings
    report = json.loads((out / "report.json").read_text())
    assert "class3" not in json.dumps(report)
