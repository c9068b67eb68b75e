"""The firmware harness core: the protocol over a real pseudo-terminal, malformed input under ASan/UBSan,
a fuzzer, and the Cortex-M4 image under qemu-system-arm."""
import shutil
import subprocess

import pytest

from conftest import harness_args
from pipeline.hil import transport
from pipeline.hil.dut import Device
from pipeline.hil.errors import DeviceError
from pipeline.hil.harness_build import QEMU_CPUS, HostDevice, QemuDevice, build_fuzzer, build_qemu, free_tcp_port
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
    ("xaudio", "this firmware has no audio front end"),  # the test backend takes no audio
    ("xfeatures", "this firmware has no audio front end"),
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
    assert info["platform"] == "host" and info["version"] == "3"


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


def _host_device(host_harness, report, input_bytes=64, *extra):
    host = HostDevice(host_harness, *harness_args(report, input_bytes, 10, *extra))
    host.__enter__()
    port = transport.open_port(host.port, 115200)
    dev = Device(port, host.port, timeout=2.0)
    dev.drain()
    return host, port, dev


def _close(host, port):
    port.close()
    host.__exit__(None, None, None)
    assert "ERROR: AddressSanitizer" not in host.stderr and "runtime error" not in host.stderr, host.stderr


def test_xdb_frames_upload_the_same_input_as_db_hex(host_harness, esp32_build):
    """A 96x96x3 input in seven CRC-checked frames (one of them with '%' and NUL bytes in it) lands in db exactly
    as the hex commands put it there: same buffer, same outputs."""
    host, port, dev = _host_device(host_harness, esp32_build["report"], 27648)
    try:
        data = bytes((i * 37 + (i >> 8)) % 256 for i in range(27648)).replace(b"\x10", b"%")
        lines = dev.load(data, frames=True)
        acks = [int(l.values[1]) for l in lines if l.kind == "x_number" and l.values[0] == "db-ok"]
        assert acks == [4096 * k for k in range(1, 7)] + [27648] and lines[-2].kind == "load_done"
        by_frames = (dev.infer(1, 0).results, dev.raw_outputs())
        window = [l.values[0] for l in dev.command("db print 8 20000") if l.kind == "buffer"]
        assert window == ["-".join(f"{b:02x}" for b in data[20000:20008])]
        dev.load(data)
        assert (dev.infer(1, 0).results, dev.raw_outputs()) == by_frames
    finally:
        _close(host, port)


def test_a_frame_whose_reply_is_late_is_not_sent_twice(host_harness, esp32_build):
    """On a loaded host the device's acknowledgement can come after the host gave up on it: the frame went in.
    The host asks where db is (xinfo's db-pos) before resending, instead of sending the frame again (which the device
    took as the next bytes: "acknowledged ... at [12288], expected 8192")."""
    from pipeline.hil.errors import DeviceTimeout

    host, port, dev = _host_device(host_harness, esp32_build["report"], 12288)
    try:
        data = bytes((i * 13) % 251 for i in range(12288))
        exchange, calls = dev.exchange, []

        def late_second_reply(payload, text, timeout=None):
            calls.append(text.split()[0])
            reply = exchange(payload, text, timeout)
            if calls.count("xdb") == 2 and calls[-1] == "xdb":  # the second frame went in, its reply is "lost"
                raise DeviceTimeout(f"no reply to {text} in time")
            return reply

        dev.exchange = late_second_reply
        dev.load(data, frames=True)
        assert calls.count("xdb") == 3 and "xinfo" in calls  # three frames of 4,096 bytes, none sent twice
        dev.exchange = exchange
        assert [l.values[1] for l in dev.command("xinfo") if l.kind == "x_number" and l.values[0] == "db-pos"] == ["12288"]
        window = [l.values[0] for l in dev.command("db print 8 8190") if l.kind == "buffer"]
        assert window == ["-".join(f"{b:02x}" for b in data[8190:8198])]
    finally:
        _close(host, port)


def test_xdb_refuses_bad_frames_and_a_cut_frame_times_out(host_harness, esp32_build):
    from pipeline.hil import protocol

    host, port, dev = _host_device(host_harness, esp32_build["report"])
    try:
        _, payload = protocol.frame(b"%%%%")
        with pytest.raises(DeviceError, match="needs 'db load N' first"):
            dev.exchange(payload, "xdb before db load")  # its four '%' are data: no command ends in them
        dev.command("db load 8")
        text, good = protocol.frame(b"\x01\x02\x03\x04")
        bad = good[:-1] + b"\x05"
        with pytest.raises(DeviceError, match="checksum mismatch: frame dropped, db at 0"):
            dev.exchange(bad, "corrupted frame")
        with pytest.raises(DeviceError, match="overflows the announced db size"):
            dev.exchange(protocol.frame(bytes(12))[1], "frame too long")
        with pytest.raises(DeviceError, match="CRC-32 as 8 hex digits"):
            dev.exchange(protocol.command("xdb 2 12345") + b"ab", "short crc")
        assert [l.values[0] for l in dev.command("db print 8") if l.kind == "buffer"] == []  # nothing written
        reply = dev.exchange(good, text)
        assert [l.values for l in reply if l.kind == "x_number"] == [("db-ok", "4")]
        port.write(protocol.command("xdb 4 00000000") + b"\x09")  # three of its bytes never come
        with pytest.raises(DeviceError, match="frame timed out after 1 of 4 bytes: dropped, db at 4"):
            dev.exchange(b"", "cut frame", timeout=3.0)
        assert [l.values for l in dev.command("name") if l.kind == "name"] == [("mcu-deploy",)]
        dev.exchange(protocol.frame(b"\x05\x06\x07\x08")[1], "last frame")
        assert [l.values[0] for l in dev.command("db print 8") if l.kind == "buffer"] == ["01-02-03-04-05-06-07-08"]
    finally:
        _close(host, port)


def test_xbaud_switches_and_falls_back_when_the_link_garbles(host_harness, esp32_build):
    host, port, dev = _host_device(host_harness, esp32_build["report"])
    try:
        assert dev.switch_baud(921600) and port.baudrate == 921600
        info = {l.values[0]: l.values[1] for l in dev.command("xinfo") if l.kind == "x_number"}
        assert info["baud"] == "921600" and info["baud-switch"] == "1"
        assert dev.switch_baud(115200)
    finally:
        _close(host, port)
    host, port, dev = _host_device(host_harness, esp32_build["report"], 64, "--bad-baud")
    try:
        assert not dev.switch_baud(921600) and port.baudrate == 115200  # both ends back at the old rate
        info = {l.values[0]: l.values[1] for l in dev.command("xinfo") if l.kind == "x_number"}
        assert info["baud"] == "115200"
        dev.load(bytes(range(64)), frames=True)
        assert len(dev.infer(1, 0).results) == 10
    finally:
        _close(host, port)


def test_measure_goes_on_at_the_board_rate_when_the_fast_one_fails(host_harness, esp32_build, tmp_path):
    said = []
    with HostDevice(host_harness, *harness_args(esp32_build["report"], 64, 10, "--bad-baud")) as dev:
        result = measure(MeasureOptions(board="esp32", port=dev.port, build_dir=esp32_build["build_dir"], runs=2,
                                        inputs=3, out_dir=tmp_path / "m"), log=said.append)
    assert result["bit_exact"] == 3
    assert any("switch to 921600 baud failed" in line and "went back to 115200" in line for line in said), said
    assert any("xdb frames, 115200 baud" in line for line in said), said


def test_a_clock_that_steps_back_drops_no_frame_and_reverts_no_baud_switch(host_harness):
    """Every other clock reading of this host device is 999 us behind the one before (as the QEMU port's clock was,
    read around SysTick's reload): the core's frame and baud timeouts must read that as no time, not as 4.29e9 us."""
    report = {"model": "test", "model_hash": "0" * 16}  # the test backend: no model needed
    host, port, dev = _host_device(host_harness, report, 4096, "--clock-back-us", "999")
    try:
        data = bytes(range(256)) * 16
        acks = [l.values for l in dev.load_frames(data, frame_bytes=512, attempts=1) if l.kind == "x_number"]
        assert acks[-1] == ("db-ok", "4096")
        assert [l.values[0] for l in dev.command("db print 8 4088") if l.kind == "buffer"] == ["f8-f9-fa-fb-fc-fd-fe-ff"]
        assert dev.switch_baud(921600)
        assert [l.values for l in dev.command("name") if l.kind == "name"] == [("mcu-deploy",)]
        assert dev.switch_baud(115200)
        assert len(dev.infer(1, 0).results) == 10
    finally:
        _close(host, port)


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and gcc-arm-none-eabi (.ci/run installs them)")
@pytest.mark.parametrize("cpu", list(QEMU_CPUS))
def test_qemu_port_clock_never_steps_back(cpu, tmp_path):
    """The QEMU port reads its clock 300,000 times once the host is there (EE_CLOCK_CHECK) and says how often it stepped
    back: SysTick reads as reloaded before its interrupt is taken, which once stepped back 999 us every millisecond."""
    import time

    image = build_qemu(tmp_path / "ee.elf", 64, 10, "test", "0" * 16, cpu=cpu, switches=("EE_CLOCK_CHECK=300000u",))
    machine = QEMU_CPUS[cpu][1]
    with QemuDevice(image, free_tcp_port(), machine=machine) as qemu:
        port = transport.open_port(qemu.url, 115200, timeout=0.2)
        port.write(b"name%")  # the check starts when something arrives
        text, deadline = b"", time.monotonic() + 60
        while b"m-x-clock-back-" not in text or not text.endswith(b"\n"):
            assert time.monotonic() < deadline, text
            text += port.read(256)
        port.close()
    line = next(l for l in text.decode().splitlines() if l.startswith("m-x-clock-back-"))
    assert line.strip() == "m-x-clock-back-0-worst-0-us"
