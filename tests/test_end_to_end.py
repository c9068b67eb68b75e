"""The main job, run as the README says: `invoke build --board=esp32` on the default model."""
import json
import os
import re
import shutil

from conftest import assert_clean_error, configure_fails_once, run_invoke, standin_tool
from pipeline.target import tflite_model

REQUIRED_FIELDS = ("model", "board", "float_metric", "int8_metric", "tflm_metric", "sparsity", "tflite_bytes",
                   "arena_bytes", "ops", "flash_bytes", "ram_bytes", "fits", "stage_seconds")


def test_build_report_meets_the_contract(esp32_build):
    report = esp32_build["report"]
    for field in REQUIRED_FIELDS:
        assert field in report, field
    assert report["model"] == "digits" and report["board"] == "esp32"
    assert report["fits"] is True
    assert report["int8_metric"] >= 95.0 and report["tflm_metric"] >= 95.0
    assert report["float_metric"] - min(report["int8_metric"], report["tflm_metric"]) <= 2.0
    # TFLM and TFLite's reference kernels make the same predictions; their int8 softmax rounds differently,
    # by up to 2 steps of 1/256 (seen: 0 to 2 depending on the weights).
    assert report["tflm_metric"] == report["int8_metric"]
    assert report["tflm_vs_tflite_max_output_diff"] <= 2
    assert 0.45 <= report["sparsity"] <= 0.55  # measured on the int8 weights of the .tflite
    assert report["tflite_bytes"] == (esp32_build["dir"] / "model.tflite").stat().st_size
    assert set(report["stage_seconds"]) >= {"train", "optimize", "convert", "validate", "generate", "fit", "firmware"}


def test_tflite_is_full_int8(esp32_build):
    info = tflite_model.read(esp32_build["dir"] / "model.tflite")
    tflite_model.require_full_int8(info)
    assert info.inputs[0].dtype == "INT8" and info.outputs[0].dtype == "INT8"
    assert "FLOAT32" not in info.tensor_types
    assert info.inputs[0].shape == [1, 8, 8, 1]


def test_esp_idf_project_is_rendered(esp32_build):
    project = esp32_build["dir"] / "firmware"
    component = (project / "main" / "idf_component.yml").read_text()
    assert "espressif/esp-tflite-micro" in component
    defaults = (project / "sdkconfig.defaults").read_text()
    assert 'CONFIG_IDF_TARGET="esp32"' in defaults
    partitions = (project / "partitions.csv").read_text()
    assert "0x300000" in partitions  # the board's 3 MiB flash budget is the app partition
    for name in ("main.cc", "model_runner.cc", "digits.h", "digits.cc", "digits_model_data.cc", "digits_model_ops.h",
                 "digits_model_settings.h", "model_library.h"):
        assert (project / "main" / name).is_file(), name
    for path in project.rglob("*"):
        if path.is_file():
            assert not re.search(r"@[A-Z_]+@", path.read_text()), f"unfilled placeholder in {path}"
    # Without ESP-IDF the build still succeeds and prints the exact command.
    assert "idf.py -C" in esp32_build["proc"].stdout


def test_warm_rebuild_runs_no_stage(esp32_build):
    proc = run_invoke("build", "--board=esp32", f"--build-dir={esp32_build['build_dir']}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    stages = {"train", "optimize", "convert", "validate", "generate", "profile", "firmware"}
    for stage in stages:
        assert f"{stage}: up to date" in proc.stdout, stage
    report = json.loads((esp32_build["dir"] / "report.json").read_text())
    assert set(report["stages_cached"]) == stages
    assert report["int8_metric"] == esp32_build["report"]["int8_metric"]


def test_changed_option_reruns_only_what_depends_on_it(esp32_build, tmp_path):
    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir)
    proc = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", "--max-drop=5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train: up to date" in proc.stdout  # --max-drop is a check, not a training input
    proc = run_invoke("generate", "--board=esp32s3", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train: up to date" in proc.stdout and "generate: done" in proc.stdout
    report = json.loads((build_dir / "esp32s3" / "digits" / "report.json").read_text())
    assert report["board"] == "esp32s3" and report["firmware"] is None


def test_a_failed_idf_py_configure_does_not_break_the_next_build(esp32_build, tmp_path):
    """STAND-IN idf.py (named as such, conftest.configure_fails_once): its first configure fails and leaves a
    half-made build folder, in which a later build would fail in Ninja."""
    fake_bin, calls = standin_tool(tmp_path, "idf.py", "ESP-IDF's idf.py: not installable by the tests",
                                   configure_fails_once("$2/build", tmp_path / "failed-once", "digits.bin"))
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}"}
    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir)
    first = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", env=env)
    assert_clean_error(first, "firmware build failed", "idf.py")
    idf_build = build_dir / "esp32" / "digits" / "firmware" / "build"
    assert (idf_build / "CMakeCache.txt").is_file() and not (idf_build / "build.ninja").exists()
    again = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{idf_build} holds no complete configure" in again.stdout
    assert (idf_build / "build.ninja").is_file() and (idf_build / "digits.bin").is_file()
    assert len(calls.read_text().splitlines()) == 2


def test_build_compiles_when_idf_py_is_on_path(esp32_build, tmp_path):
    """ESP-IDF cannot be installed here, so a STAND-IN idf.py (named as such) records how it is called."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "calls.txt"
    (fake_bin / "idf.py").write_text(f"#!/bin/sh\n# STAND-IN for ESP-IDF's idf.py (not installable here)\n"
                                     f"echo \"$@\" >> {calls}\nexit ${{FAKE_IDF_EXIT:-0}}\n")
    (fake_bin / "idf.py").chmod(0o755)
    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir)
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}"}
    proc = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert calls.read_text().split() == ["-C", str(build_dir / "esp32" / "digits" / "firmware"), "build"]
    good_report = (build_dir / "esp32" / "digits" / "report.json").read_text()
    proc = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", env={**env, "FAKE_IDF_EXIT": "2"})
    assert proc.returncode != 0 and "firmware build failed" in proc.stderr
    # A failed build leaves the last good build's report exactly as it was.
    assert (build_dir / "esp32" / "digits" / "report.json").read_text() == good_report


def test_generate_from_a_model_trained_elsewhere(esp32_build, tmp_path):
    byo = tmp_path / "my_model.tflite"
    shutil.copy(esp32_build["dir"] / "model.tflite", byo)
    proc = run_invoke("generate", f"--tflite={byo}", "--board=nano33ble", f"--build-dir={tmp_path / 'b'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "b" / "nano33ble" / "my_model" / "report.json").read_text())
    assert report["ops"] == esp32_build["report"]["ops"]
    # The same host need; the scratch differs by kernels: CMSIS-NN's conv im2col (576) vs ESP-NN's softmax (48),
    # and so does the margin: none for CMSIS-NN itself (the rule checked under QEMU) but 96 bytes + 12 an operator
    # for Zephyr's TFLM module, 1 KiB for ESP-NN (no ESP32 run).
    from pipeline.target import arena, graph

    ops = len(graph.read(byo).ops)
    assert report["arena_measured_bytes"] == esp32_build["report"]["arena_measured_bytes"]
    assert (report["kernels"], report["arena_kernel_scratch_bytes"]) == ("cmsis-nn", 576)
    assert report["arena_margin_bytes"] == arena.framework_margin("zephyr", ops) >= 96 + 12 * ops
    assert report["arena_device_used_bytes"] <= report["arena_bytes"] < report["arena_measured_bytes"]  # 32-bit
    assert esp32_build["report"]["arena_margin_bytes"] == 1024
    assert report["int8_metric"] is None  # no --data: nothing to measure accuracy on
    proc = run_invoke("generate", f"--tflite={byo}", "--board=nano33ble", "--data=digits",
                      f"--build-dir={tmp_path / 'c'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "c" / "nano33ble" / "my_model" / "report.json").read_text())
    assert report["tflm_metric"] >= 95.0


def test_every_task_has_help():
    listing = run_invoke("--list").stdout
    for name in ("train", "optimize", "convert", "generate", "build", "boards", "clean", "bench", "compare"):
        assert re.search(rf"^\s+{name}\s+\S", listing, re.M), f"{name} has no help line"
        helptext = run_invoke("--help", name).stdout
        options = re.findall(r"^\s+(-\w, )?--(\[no-\])?[\w-]+(=\w+)?\s*$", helptext, re.M)
        assert not options, f"{name}: an option without help text: {options}"


def test_boards_lists_all_boards():
    proc = run_invoke("boards")
    assert proc.returncode == 0
    for name in ("esp32", "esp32s3", "nano33ble", "nucleo-l4r5zi", "rp2040"):
        assert re.search(rf"^{re.escape(name)}\s", proc.stdout, re.M), name
