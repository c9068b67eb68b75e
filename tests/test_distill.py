"""Knowledge distillation: a student trained on a wider teacher's softened outputs, reported beside the same student
trained alone."""
import json

import numpy as np

from conftest import assert_clean_error, run_invoke


def test_distilled_student_is_built_and_compared_with_the_student_alone(tmp_path):
    proc = run_invoke("build", "--board=esp32", "--width=0.5", "--teacher=1.0", "--epochs=3", "--max-drop=100",
                      f"--build-dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "esp32" / "digits" / "report.json").read_text())
    d = report["distillation"]
    assert d["teacher"] == "1.0" and d["temperature"] > 1 and 0 < d["alpha"] < 1
    assert d["distilled"]["tflm"] == report["tflm_metric"]
    assert all(10.0 <= v <= 100.0 for v in (d["distilled"]["tflm"], d["alone"]["tflm"]))  # real int8 TFLM accuracy
    assert "distillation (teacher 1.0" in proc.stdout and "trained alone" in proc.stdout
    trained = sorted(p.name for p in (tmp_path / "_models" / "digits").iterdir())
    assert trained == ["w0.5-e3-seed0", "w0.5-e3-seed0-kd" + trained[1][-8:], "w1-e3-seed0"]  # student, teacher


def test_soften_matches_softmax_of_logits_over_temperature():
    from pipeline.model import train

    logits = np.array([[2.0, -1.0, 0.5]], dtype=np.float32)
    probs = np.exp(logits) / np.exp(logits).sum()
    expected = np.exp(logits / 4) / np.exp(logits / 4).sum()
    np.testing.assert_allclose(np.asarray(train.soften(probs, 4.0)), expected, rtol=1e-5)


def test_bad_teacher_is_one_line(tmp_path):
    assert_clean_error(run_invoke("train", "--teacher=big", f"--build-dir={tmp_path}"), "--teacher=big", ".h5")
    assert_clean_error(run_invoke("train", "--model=sine", "--teacher=2", f"--build-dir={tmp_path}"),
                       "needs a classifier")
