"""The firmware harness core: the protocol over a real pseudo-terminal, malformed input under ASan/UBSan,
a fuzzer, and the Cortex-M4 image under qemu-system-arm."""
import shutil
import subprocess

import pytest

from conftest import harness_args
from pipeline.hil import transport
from pipeline.hil.dut import Device
from pipeline.hil.errors import DeviceError
from pipeline.hil.harness_build import HostDevice, QemuDevice, build_fuzzer, build_qemu
from pipeline.hil.measure import MeasureOptions, measure

MALFORMED = [
    ("", "Empty command"),
    ("x" * 81, "Command too long"),
    ("db 0102", "needs 'db load N' first"),
    ("db load 0", "must be >0 bytes"),
    ("db load 27649", "exceeds maximum"),
    ("db load abc", "must be >0 bytes"),
    ("infer 0", "Inference iterations must be >0"),
    ("infer 1 0", "Input not loaded"),
    ("results", "No results"),
    ("frobnicate", "Unknown command: frobnicate"),
    ("db", "requires a subcommand"),
]


@pytest.fixture
def device(host_harness, esp32_build):
    with HostDevice(host_harness, *harness_args(esp32_build["report"])) as host:
        port = transport.open_port(host.port, 115200)
        dev = Device(port, host.port, timeout=2.0)
        dev.drain()  # the boot banner
        yield dev
        port.close()
    assert "ERROR: AddressSanitizer" not in host.stderr and "runtime error" not in host.stderr, host.stderr


@pytest.mark.parametrize("command, reason", MALFORMED)
def test_malformed_command_gets_an_error_and_the_device_keeps_working(device, command, reason):
    with pytest.raises(DeviceError, match=reason):
        if len(command) > 80:  # protocol.command() refuses it; send the bytes as a broken host would
            device.exchange((command + "%").encode(), "long command")
        else:
            device.command(command)
    assert [line.values for line in device.command("name") if line.kind == "name"] == [("mcu-deploy",)]


def test_db_refuses_bad_hex_and_overflow_without_writing(device):
    device.command("db load 4")
    with pytest.raises(DeviceError, match="Invalid hex digit 'zz'"):
        device.command("db 01zz")
    with pytest.raises(DeviceError, match="Insufficent number of hex digits"):
        device.command("db 010")
    with pytest.raises(DeviceError, match="overflows the announced 4 bytes"):
        device.command("db 0102030405")
    device.command("db 0a0b")
    lines = device.command("db print 4")
    assert [l.values[0] for l in lines if l.kind == "buffer"] == ["0a-0b"]  # nothing from the refused commands
    lines = device.command("db print 1 1")
    assert [l.values[0] for l in lines if l.kind == "buffer"] == ["0b"]


def test_infer_reports_two_timestamps_and_results(device):
    device.load(bytes(range(64)))
    reply = device.infer(5, 2)
    assert reply.iterations == 5 and reply.elapsed_us >= 0
    assert len(reply.results) == 10
    from pipeline.hil.test_backend import test_backend_outputs

    assert device.raw_outputs() == test_backend_outputs(bytes(range(64)), 10)


def test_results_after_many_inferences_equal_a_single_one(device):
    """The test backend scribbles over its input after each inference, as TFLM may reuse the input tensor's
    memory: the core must load the input again before every inference, warm-ups included."""
    from pipeline.hil.test_backend import test_backend_outputs

    data = bytes(range(3, 67))
    device.load(data)
    single = (device.infer(1, 0).results, device.raw_outputs())
    many = (device.infer(20, 5).results, device.raw_outputs())
    assert many == single and single[1] == test_backend_outputs(data, 10)


def test_xprofile_times_each_operator_and_says_where_the_clock_is(device):
    with pytest.raises(DeviceError, match="No results"):
        device.command("xprofile")
    device.load(bytes(64))
    device.infer(1, 0)
    profile = device.profile()
    assert [name for name, _ in profile] == ["TEST_HASH", "TEST_OUTPUTS"] and all(us >= 0 for _, us in profile)
    info = {l.values[0]: l.values[1] for l in device.command("xinfo") if l.kind in ("x_text", "x_number")}
    assert info["platform"] == "host" and info["version"] == "2"


def test_core_fuzzed_under_sanitizers(tmp_path):
    fuzzer = build_fuzzer(tmp_path / "fuzz_core")
    for seed in range(1, 6):
        proc = subprocess.run([str(fuzzer), str(seed), "40000"], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "40000 cases passed" in proc.stdout


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and gcc-arm-none-eabi (.ci/run installs them)")
def test_cortex_m4_image_under_qemu_measures_repeatably(esp32_build, tmp_path):
    report = esp32_build["report"]
    image = build_qemu(tmp_path / "ee.elf", 64, 10, report["model"], report["model_hash"], work=50)
    medians = []
    for attempt, tcp_port in enumerate((47311, 47312)):
        with QemuDevice(image, tcp_port) as qemu:
            result = measure(MeasureOptions(board="esp32", port=qemu.url, build_dir=esp32_build["build_dir"],
                                            runs=5, inputs=5, out_dir=tmp_path / f"m{attempt}"), log=lambda _: None)
        assert result["source"] == "test-backend" and result["device"]["backend"] == "test"
        assert result["bit_exact"] == 5
        assert result["latency_us"]["median"] > 0
        medians.append(result["latency_us"]["median"])
    # -icount shift=0: instruction-counted time repeats, to the port clock's 1 us resolution (when a command arrives
    # depends on the host, so the phase of the microsecond counter at the first timestamp does too).
    assert abs(medians[0] - medians[1]) <= 1.0
