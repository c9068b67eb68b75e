"""Board budgets and estimates a user can compare: flash and RAM are what the framework's linker really has
(boards/facts/linker.toml, each figure with its source), and every board's CPI comes from one rule."""
import ast
import re
import tomllib

import numpy as np
import pytest

from conftest import assert_clean_error, run_invoke
from pipeline import boards
from pipeline.boards import BOARDS_DIR
from pipeline.target import costmodel, fit, graph

FACTS = tomllib.loads((BOARDS_DIR / "facts" / "linker.toml").read_text())


def size(expression: str) -> int:
    """A size as the framework's source writes it: DT_SIZE_K(n), DT_SIZE_M(n), hex and + - * ( )."""
    text = re.sub(r"DT_SIZE_K\(([^)]*)\)", r"((\1) * 1024)", expression)
    text = re.sub(r"DT_SIZE_M\(([^)]*)\)", r"((\1) * 1048576)", text)
    tree = ast.parse(text, mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.Constant, ast.Add, ast.Sub, ast.Mult)
    assert all(isinstance(node, allowed) for node in ast.walk(tree)), expression
    return int(eval(compile(tree, "<size>", "eval")))


def test_size_expressions_read_as_the_source_means():
    assert size("DT_SIZE_M(2) - 0x100") == 2 * 1024 * 1024 - 256
    assert size("0x40000 - (0x100 + 0x100)") == 261632


@pytest.mark.parametrize("board", boards.board_names())
def test_board_budgets_are_what_the_linker_has(board):
    b = boards.load_board(board)
    assert board in FACTS, f"boards/facts/linker.toml has no entry for {board}: add its linker facts with sources"
    facts = FACTS[board]
    assert size(facts["flash"]) == b.flash_bytes, (facts["flash_source"], b.flash_bytes)
    assert b.flash_source, f"{board}: [memory] flash_source must name where the flash budget comes from"
    if "ram" in facts:
        assert size(facts["ram"]) == b.ram_bytes, (facts["ram_source"], b.ram_bytes)
    if "arena_block" in facts:
        assert size(facts["arena_block"]) == b.arena_block_bytes, facts["arena_block_source"]
    if "clock_mhz" in facts:
        assert int(facts["clock_mhz"]) == b.clock_mhz, facts["clock_source"]
    assert b.ram_source, f"{board}: [memory] ram_source must name where the RAM budget comes from"
    if facts.get("verified", True):
        assert "ram" in facts and "estimate" not in b.ram_source.lower(), board
    else:  # an unverified budget says so where the user reads it
        assert facts["missing"] and re.search("estimate|NOT VERIFIED", b.ram_source), b.ram_source


def test_nucleo_ram_is_zephyrs_sram0_not_the_chips_640_kib():
    b = boards.load_board("nucleo-l4r5zi")
    assert b.ram_bytes == 192 * 1024 and "zephyr,sram" in b.ram_source


def test_esp32_arena_must_fit_the_largest_heap_region():
    b = boards.load_board("esp32")
    assert fit.check(b, 100_000, 100_000, 64).fits
    too_big = fit.check(b, 100_000, 120_000, 64)  # well inside the RAM total, larger than any one heap region
    assert too_big.ram_bytes < b.ram_bytes and not too_big.fits
    with pytest.raises(Exception, match="largest block"):
        fit.require(too_big, b, 100_000, 120_000)


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """A real int8 model whose arena and input need ~260 KiB of RAM: inside the chip's 640 KiB, over the 192 KiB
    Zephyr links into on the NUCLEO-L4R5ZI. Its weights keep it large enough for the host arena measurement."""
    from pipeline.model import tfenv

    k, tf = tfenv.keras(), tfenv.tf()
    model = k.Sequential([k.layers.Input((96, 96, 8)), k.layers.Conv2D(96, 7, strides=4, activation="relu"),
                          k.layers.GlobalAveragePooling2D(), k.layers.Dense(4)])
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(8):
            yield [rng.random((1, 96, 96, 8), dtype=np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("wide") / "wide.tflite"
    path.write_bytes(conv.convert())
    return path


def test_fit_refuses_a_model_over_the_ram_zephyr_links(wide_model, tmp_path):
    proc = run_invoke("generate", f"--tflite={wide_model}", "--board=nucleo-l4r5zi", f"--build-dir={tmp_path}")
    line = assert_clean_error(proc, "does not fit nucleo-l4r5zi", "RAM", "192.0 KiB", "zephyr,sram")
    assert "flash" not in line.split("does not fit nucleo-l4r5zi: ")[1].split(";")[0]
    assert not list(tmp_path.rglob("report.json"))


# -- one CPI rule ---------------------------------------------------------------------------------------------------

INSTRUCTION_BOARDS = [b for b in boards.board_names()
                      if costmodel.for_board(boards.load_board(b)).unit == "instructions"]


@pytest.mark.parametrize("board", INSTRUCTION_BOARDS)
def test_every_board_cpi_comes_from_the_one_rule(board):
    b = boards.load_board(board)
    cost = costmodel.for_board(b)
    cpi = cost.cpi_for(b)
    if b.qemu_machine:  # its clock counts instructions: CPI 1 by definition
        assert cpi.value == cpi.low == cpi.high == 1.0 and "QEMU" in cpi.source
        return
    assert b.cycles_per_instruction is None, f"{board}: a CPI of its own instead of the rule's facts"
    assert b.flash_wait_cycles and b.flash_path and b.estimate_source, f"{board}: [estimate] facts missing"
    (w_lo, w_hi), ((e_lo, e_hi), _) = b.flash_wait_cycles, costmodel.FLASH_PATHS[b.flash_path]
    assert cpi.low == pytest.approx(cost.cycles_per_instruction + w_lo * e_lo)
    assert cpi.high == pytest.approx(cost.cycles_per_instruction + w_hi * e_hi)
    assert cpi.low <= cpi.value <= cpi.high and cpi.source.startswith("rule:") and b.estimate_source in cpi.source


@pytest.fixture(scope="module")
def small_graph(wide_model):
    return graph.read(wide_model)


def test_estimates_scale_with_clock_over_cpi(small_graph):
    """Same core and kernels -> latency x clock / CPI (the instructions) is the same on every board, the range
    holds the estimate, and a board that the rule makes faster is estimated faster."""
    by_family: dict = {}
    for name in boards.board_names():
        b = boards.load_board(name)
        by_family.setdefault((b.core, b.kernels), []).append(b)
    compared = 0
    for family, members in by_family.items():
        estimates = [(b, costmodel.estimate(small_graph, b)) for b in members]
        instructions = [e.latency_us * b.clock_mhz / e.cycles_per_instruction for b, e in estimates]
        assert max(instructions) == pytest.approx(min(instructions), rel=1e-9), family
        for b, e in estimates:
            assert e.latency_low_us <= e.latency_us <= e.latency_high_us
        for a, ea in estimates:
            for b, eb in estimates:
                if a.clock_mhz / ea.cycles_per_instruction > b.clock_mhz / eb.cycles_per_instruction:
                    assert ea.latency_us < eb.latency_us
                    compared += 1
    assert compared >= 3
    nucleo, nano = (costmodel.estimate(small_graph, boards.load_board(n)) for n in ("nucleo-l4r5zi", "nano33ble"))
    assert nucleo.latency_us < nano.latency_us  # 80 MHz with 3 wait states beats 64 MHz


def test_cost_model_in_cycles_keeps_its_stated_range(small_graph):
    e = costmodel.estimate(small_graph, boards.load_board("esp32c3"))
    assert e.latency_low_us == pytest.approx(0.67 * e.latency_us) and e.latency_high_us == pytest.approx(1.5 * e.latency_us)


def test_bad_flash_wait_cycles_is_one_line(tmp_path):
    text = (BOARDS_DIR / "nucleo-l4r5zi.toml").read_text().replace("flash_wait_cycles = 3", "flash_wait_cycles = [4, 2]")
    path = tmp_path / "b.toml"
    path.write_text(text)
    proc = run_invoke("profile", f"--board={path}", f"--build-dir={tmp_path / 'out'}")
    assert_clean_error(proc, "flash_wait_cycles", "[low, high]")


# -- the runtime's flash follows the ops the model registers ---------------------------------------------------------

def test_runtime_flash_follows_the_models_ops():
    b = boards.load_board("nucleo-l4r5zi")
    table = fit.kernel_table(b)
    assert table and "measured" in table["source"]
    same = fit.runtime_flash(b, list(b.runtime_ops))
    assert same.bytes == b.runtime_flash_bytes - b.runtime_other_ops_bytes  # the measured build, no allowance
    kws_ops = ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    kws = fit.runtime_flash(b, kws_ops)
    ops = table["ops"]
    assert kws.bytes == same.bytes + ops["DEPTHWISE_CONV_2D"] + ops["AVERAGE_POOL_2D"] - ops["MAX_POOL_2D"]
    assert "+%d DEPTHWISE_CONV_2D" % ops["DEPTHWISE_CONV_2D"] in kws.source
    odd = fit.runtime_flash(b, list(b.runtime_ops) + ["TOPK_V2"])  # not measured: the board's figure, said so
    assert odd.bytes == b.runtime_flash_bytes and "TOPK_V2 not in" in odd.source
    no_table = boards.load_board("rp2040")  # no table for its core: the allowance stays
    assert fit.runtime_flash(no_table, kws_ops).bytes == no_table.runtime_flash_bytes
    assert fit.check(b, 1000, 1000, 0, kws_ops).flash_bytes == 1000 + kws.bytes


def test_a_boards_framework_table_comes_before_the_generic_one(tmp_path, monkeypatch):
    # Zephyr's tflite-micro module is its own TFLM snapshot built with Zephyr's flags (CMSIS-NN at -Ofast, TFLM at
    # -Os), so a table measured in Zephyr's build is the one for a Zephyr board; other frameworks keep the generic.
    def table(name, conv):
        (tmp_path / name).write_text(f'[meta]\nsource = "{name}"\n[ops]\nCONV_2D = {conv}\nDEPTHWISE_CONV_2D = 100\n'
                                     'MAX_POOL_2D = 10\nRESHAPE = 1\nFULLY_CONNECTED = 1\nSOFTMAX = 1\n'
                                     'AVERAGE_POOL_2D = 1\n')
    table("cortex-m4f-cmsis-nn.toml", 1)
    monkeypatch.setattr(fit, "KERNEL_FLASH_DIR", tmp_path)
    zephyr, arduino = boards.load_board("nucleo-l4r5zi"), boards.load_board("nano33ble-arduino")
    assert fit.kernel_table(zephyr)["source"] == fit.kernel_table(arduino)["source"] == "cortex-m4f-cmsis-nn.toml"
    table("cortex-m4f-cmsis-nn-zephyr.toml", 2)
    assert fit.kernel_table(zephyr)["source"] == "cortex-m4f-cmsis-nn-zephyr.toml"
    assert fit.kernel_table(arduino)["source"] == "cortex-m4f-cmsis-nn.toml"
    kws = fit.runtime_flash(zephyr, ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
                                     "SOFTMAX"])
    assert kws.bytes == zephyr.runtime_flash_bytes - zephyr.runtime_other_ops_bytes + 100 + 1 - 10
    assert "cortex-m4f-cmsis-nn-zephyr.toml" in kws.source


def test_zephyr_m4f_kernel_table_is_within_2_percent_of_the_op_sets_linked_whole():
    # The kept measurements: each op set linked whole with Zephyr's TFLM/CMSIS-NN objects, against the digits set.
    # The fit's runtime for a model's ops (board runtime + marginals) must be within 2 % of the board's measured
    # runtime moved by what linking that op set whole added.
    path = fit.KERNEL_FLASH_DIR / "cortex-m4f-cmsis-nn-zephyr.toml"
    data = tomllib.loads(path.read_text())
    probes = {p["name"]: p for p in data["probe"]}
    assert {"digits", "ds_cnn", "kws_vww", "ic", "ad"} <= set(probes)
    digits = probes["digits"]["flash_bytes"]
    for name in ("nucleo-l4r5zi", "nrf52840dk", "qemu-m4"):
        b = boards.load_board(name)
        assert fit.kernel_table(b)["path"] == path
        for probe in probes.values():
            est = fit.runtime_flash(b, probe["ops"])
            linked = b.runtime_flash_bytes - b.runtime_other_ops_bytes + probe["flash_bytes"] - digits
            assert abs(est.bytes / linked - 1) <= 0.02, (name, probe["name"], est.bytes, linked)
            assert "Zephyr" in est.source
    # An op only the generic table has: that table, not the board's allowance.
    nucleo = boards.load_board("nucleo-l4r5zi")
    mean = fit.runtime_flash(nucleo, list(nucleo.runtime_ops) + ["MEAN"])
    assert "MEAN" not in data["ops"] and f"+{fit.kernel_tables(nucleo)[1]['ops']['MEAN']} MEAN" in mean.source
