"""The generated firmware inputs: exact bytes, a compilable array, exactly the model's ops, a safe arena."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from pipeline.target import arena, tflite_model
from pipeline.firmware import codegen
from pipeline.target.tflm_ops import RESOLVER_METHODS

METHOD_TO_OP = {method: op for op, method in RESOLVER_METHODS.items()}


def parse_c_array(source: str) -> bytes:
    body = re.search(r"g_model_data\[kModelDataSize\] = \{(.*?)\};", source, re.S).group(1)
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def resolver_ops(header: str) -> list[str]:
    return [METHOD_TO_OP[m] for m in re.findall(r"resolver\.(Add\w+)\(\)", header)]


def test_c_array_round_trips_to_the_tflite(esp32_build):
    generated = esp32_build["dir"] / "generated"
    model_bytes = (esp32_build["dir"] / "model.tflite").read_bytes()
    source = (generated / "model_data.cc").read_text()
    assert parse_c_array(source) == model_bytes
    assert "alignas(16) const unsigned char g_model_data" in source
    header = (generated / "model_data.h").read_text()
    assert f"kModelDataSize = {len(model_bytes)};" in header


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_generated_sources_compile_and_hold_the_exact_size(esp32_build, tmp_path):
    generated = esp32_build["dir"] / "generated"
    size = len((esp32_build["dir"] / "model.tflite").read_bytes())
    for name in ("model_data.cc", "model_settings.cc"):
        obj = tmp_path / (name + ".o")
        proc = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", str(generated / name), "-o", str(obj)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    symbols = subprocess.run(["nm", "-S", "-C", str(tmp_path / "model_data.cc.o")], capture_output=True, text=True).stdout
    line = next(l for l in symbols.splitlines() if l.endswith("g_model_data"))
    assert int(line.split()[1], 16) == size


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="needs gcc-arm-none-eabi")
def test_model_data_compiles_for_cortex_m4(esp32_build, tmp_path):
    obj = tmp_path / "model_data.o"
    proc = subprocess.run(["arm-none-eabi-g++", "-std=c++17", "-mcpu=cortex-m4", "-mthumb", "-Werror", "-c",
                           str(esp32_build["dir"] / "generated" / "model_data.cc"), "-o", str(obj)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    sections = subprocess.run(["arm-none-eabi-objdump", "-h", str(obj)], capture_output=True, text=True).stdout
    assert ".rodata" in sections  # const: stays in flash, not copied to RAM


def test_resolver_registers_exactly_the_models_ops(esp32_build):
    header = (esp32_build["dir"] / "generated" / "model_ops.h").read_text()
    info = tflite_model.read(esp32_build["dir"] / "model.tflite")
    assert resolver_ops(header) == info.ops
    assert "MicroMutableOpResolver<kModelOpCount>" in header
    assert f"kModelOpCount = {len(info.ops)};" in header


def test_arena_is_the_cores_need_plus_the_esp_nn_margin(esp32_build):
    from pipeline import boards
    from pipeline.target import graph, kernels

    report = esp32_build["report"]
    model_bytes = (esp32_build["dir"] / "model.tflite").read_bytes()
    host = arena.measure(model_bytes)
    scratch = kernels.scratch(graph.read(esp32_build["dir"] / "model.tflite"), boards.load_board("esp32"))
    assert report["arena_kernel_scratch_bytes"] == scratch.max_bytes == 48  # ESP-NN's softmax: 4 bytes a class, to 16
    board = arena.for_board(host, arena.model_layout(model_bytes), scratch.per_op, "esp-nn", margin=1024)
    assert report["arena_bytes"] == board.arena_bytes == board.device_need_bytes + 1024  # ESP-NN's margin kept
    assert board.device_need_bytes < host.measured_bytes  # 32-bit structs: less than the 64-bit host needs
    assert report["arena_host_bytes"] == host.measured_bytes  # what the host runs (validation, sample) use
    assert report["arena_bytes"] % 16 == 0
    settings = (esp32_build["dir"] / "generated" / "model_settings.h").read_text()
    assert f"kTensorArenaSize = {report['arena_bytes']};" in settings


def test_esp32s3_arena_holds_esp_nn_scratch(esp32_build, tmp_path):
    """The S3's ESP-NN conv asks for more scratch than the host's whole arena: the generated size includes it."""
    from conftest import run_invoke

    proc = run_invoke("generate", "--board=esp32s3", f"--tflite={esp32_build['dir'] / 'model.tflite'}",
                      f"--build-dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "esp32s3" / "model" / "report.json").read_text())
    assert report["kernels"] == "esp-nn" and report["arena_kernel_scratch_op"] == "#1 CONV_2D"
    assert report["arena_kernel_scratch_bytes"] == 9408
    # the scratch is planned beside the tensors alive at its op, with the 32-bit structs, plus ESP-NN's margin
    assert report["arena_bytes"] >= report["arena_device_used_bytes"] + 1024 > 9408 + 1024
    assert "esp-nn scratch up to 9408 for #1 CONV_2D" in proc.stdout


def test_arena_measurement_matches_the_smallest_arena_tflm_accepts(esp32_build):
    """Bisect the real minimum with the host TFLM runtime: the host's need (what its runs use) is that minimum,
    rounded to 16; the board's arena is the 32-bit need (tests/test_mcu_arena.py checks it against the device)."""
    model_bytes = (esp32_build["dir"] / "model.tflite").read_bytes()

    def runs(size):
        return arena.runs_in(model_bytes, size)

    lo, hi = 256, 1 << 16
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if runs(mid) else (mid + 1, hi)
    assert lo <= esp32_build["report"]["arena_host_bytes"] < lo + 16
    assert not runs(lo - 16)


def test_model_settings_match_the_tflite(esp32_build):
    info = tflite_model.read(esp32_build["dir"] / "model.tflite")
    settings = (esp32_build["dir"] / "generated" / "model_settings.h").read_text()
    assert f"kInputZeroPoint = {info.inputs[0].zero_point};" in settings
    assert f"kOutputSize = {int(np.prod(info.outputs[0].shape))};" in settings
    source = (esp32_build["dir"] / "generated" / "model_settings.cc").read_text()
    labels = ", ".join(f'"{d}"' for d in range(10))
    assert f"const char* const kLabels[kLabelCount] = {{{labels}}};" in source


def test_unsupported_and_custom_ops_are_named(esp32_build):
    info = tflite_model.read(esp32_build["dir"] / "model.tflite")
    info.ops = info.ops + ["TOPK_V2"]
    with pytest.raises(codegen.PipelineError, match="TOPK_V2"):
        codegen.resolver_methods(info)
    info.ops, info.custom_ops = info.ops[:-1], ["MyCustomOp"]
    with pytest.raises(codegen.PipelineError, match="MyCustomOp"):
        codegen.resolver_methods(info)
