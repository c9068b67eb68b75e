"""Boards, the stage cache and the fit check."""

import pytest

from pipeline import boards, cache
from pipeline.target import fit
from pipeline.errors import PipelineError


def test_shipped_boards_load_with_sane_budgets():
    loaded = boards.all_boards()
    assert {b.name for b in loaded} >= {"esp32", "esp32s3", "nano33ble", "nucleo-l4r5zi", "rp2040"}
    for b in loaded:
        assert b.runtime_flash_bytes < b.flash_bytes and b.runtime_ram_bytes < b.ram_bytes
        assert (b.flashers or b.qemu_machine) and b.serial_baud > 0  # QEMU boards load the ELF: nothing to flash
    assert boards.load_board("esp32s3").target == "esp32s3"


def test_user_board_file_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((boards.BOARDS_DIR / "rp2040.toml").read_text().replace('name = "rp2040"', 'name = "mine"'))
    assert boards.load_board(str(path)).name == "mine"
    with pytest.raises(PipelineError, match="does not exist"):
        boards.load_board(str(tmp_path / "other.toml"))


def test_stage_runs_once_per_key_and_never_stamps_a_failure(tmp_path):
    calls = []
    out = tmp_path / "artifact"

    def work():
        calls.append(1)
        out.write_text("x")
        return {"value": len(calls)}

    key = cache.stage_key("s", {"a": 1})
    assert cache.run_stage(tmp_path, "s", key, [out], work).cached is False
    again = cache.run_stage(tmp_path, "s", key, [out], work)
    assert again.cached and again.result == {"value": 1} and len(calls) == 1
    assert cache.stage_key("s", {"a": 2}) != key
    out.unlink()  # a missing output forces a rerun even with the same key
    assert cache.run_stage(tmp_path, "s", key, [out], work).cached is False

    def broken():
        raise PipelineError("boom")

    with pytest.raises(PipelineError):
        cache.run_stage(tmp_path, "s", cache.stage_key("s", {"a": 3}), [out], broken)
    assert not cache.stamp_path(tmp_path, "s").exists()


def test_stage_key_follows_input_file_content(tmp_path):
    f = tmp_path / "in.bin"
    f.write_bytes(b"1")
    first = cache.stage_key("s", {}, [f])
    f.write_bytes(b"2")
    assert cache.stage_key("s", {}, [f]) != first


def test_fit_adds_the_runtime_estimates():
    board = boards.load_board("nano33ble")
    result = fit.check(board, tflite_bytes=100_000, arena_bytes=50_000, input_bytes=64)
    assert result.flash_bytes == 100_064 + board.runtime_flash_bytes  # the built-in test sample
    assert result.ram_bytes == 50_064 + board.runtime_ram_bytes  # the harness's input buffer
    assert result.fits
    too_big = fit.check(board, tflite_bytes=board.flash_bytes, arena_bytes=1)
    assert not too_big.fits
    with pytest.raises(PipelineError, match="flash"):
        fit.require(too_big, board, board.flash_bytes, 1)
