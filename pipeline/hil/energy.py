"""Energy per inference, from one of four sources behind one interface:

- ppk2: a Nordic Power Profiler Kit II through `ppk2-api`, integrating current only while the DUT's timestamp
  GPIO (wired to the PPK2's logic input D0) marks the timed loop, as MLPerf Tiny's energy monitors do;
- lpm01a: an ST X-NUCLEO-LPM01A power board (MLPerf Tiny's reference energy monitor) over its serial text protocol,
  set up as the MLCommons runner sets it up (energy samples at 1 kHz, events on D7's falling edges);
- firmware: an on-board meter the firmware reports as "m-x-energy-uj-N" for the timed loop;
- estimate: the board file's active power x the measured latency, labelled "estimated" in every output.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pipeline.boards import Board
from pipeline.errors import PipelineError
from pipeline.hil.dut import InferReply


class EnergyMeter:
    name = ""
    label = "measured"  # how the figure was obtained: "measured: PPK2", "measured: firmware meter", "estimated: ..."
    needs_timestamp_pin = False  # the meter finds the timed loop by the DUT's timestamp pin

    def start(self) -> None:
        pass

    def per_inference_uj(self, reply: InferReply) -> float | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NoMeter(EnergyMeter):
    """No energy figure: where the latency is not the board's own (QEMU, host, emulated, test backend)."""
    name = "none"

    def __init__(self, label: str):
        self.label = label

    def per_inference_uj(self, reply: InferReply) -> None:
        return None


class EstimatedEnergy(EnergyMeter):
    name = "estimate"
    label = "estimated: board active_mw x measured latency"

    def __init__(self, board: Board):
        if board.active_power_mw is None:
            raise PipelineError(f"board {board.name} has no [power] active_mw: add it to the board file, "
                                "or measure energy with --energy=ppk2:PORT")
        self.power_mw = board.active_power_mw

    def per_inference_uj(self, reply: InferReply) -> float:
        # mW x us = nJ; / 1000 = uJ
        return self.power_mw * reply.elapsed_us / reply.iterations / 1000.0


class FirmwareEnergy(EnergyMeter):
    name = "firmware"
    label = "measured: firmware meter"

    def per_inference_uj(self, reply: InferReply) -> float:
        if "energy-uj" not in reply.extra:
            raise PipelineError("the firmware reported no m-x-energy-uj line: it has no on-board meter; "
                                "use --energy=estimate or --energy=ppk2:PORT")
        return float(reply.extra["energy-uj"]) / reply.iterations


class Ppk2Energy(EnergyMeter):
    """Needs a PPK2 in source-meter mode powering the DUT, and the DUT's timestamp pin (the board file's [energy]
    timestamp_pin) on the PPK2's logic input D0. Samples are read from the port while the device runs (a thread:
    the PPK2 sends 400 kB/s, more than a serial buffer holds); the current of the samples with D0 high, times the
    supply voltage and the 10 us between samples, is the energy of the timed loop."""

    name = "ppk2"
    label = "measured: PPK2"
    needs_timestamp_pin = True
    SUPPLY_MV = 3300
    SAMPLE_S = 1e-5  # the PPK2 samples at 100 kHz
    WINDOW_WAIT_S = 5.0  # after the device's reply, how long the samples may take to show the window's end

    def __init__(self, port: str):
        try:
            from ppk2_api.ppk2_api import PPK2_API
        except ImportError:
            raise PipelineError("--energy=ppk2 needs the ppk2-api package: pip install ppk2-api") from None
        try:
            self.ppk2 = PPK2_API(port, timeout=1)
            if not self.ppk2.get_modifiers():
                raise PipelineError("it sent no calibration data (is it a PPK2?)")
            self.ppk2.use_source_meter()
            self.ppk2.set_source_voltage(self.SUPPLY_MV)
            self.ppk2.toggle_DUT_power("ON")
        except Exception as exc:  # the library raises plain serial errors and its own asserts
            raise PipelineError(f"cannot use the PPK2 on {port}: {exc}; check the port (--energy=ppk2:PORT)") from None
        self.chunks: list[bytes] = []
        self.stop_reading = None
        self.reader = None

    def _read(self) -> None:
        while not self.stop_reading.is_set():
            data = self.ppk2.get_data()
            if data:
                self.chunks.append(data)
            else:
                time.sleep(0.002)

    def start(self) -> None:
        import threading

        self.ppk2.ser.reset_input_buffer()  # samples of an earlier run
        self.ppk2.remainder = {"sequence": b"", "len": 0}  # ppk2-api's partial-sample carry-over
        self.chunks = []
        self.stop_reading = threading.Event()
        self.ppk2.start_measuring()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _window_closed(self) -> bool:
        data = b"".join(self.chunks)
        words = np.frombuffer(data[:len(data) // 4 * 4], dtype="<u4")
        d0 = (words >> 24) & 1
        rises = np.flatnonzero(np.diff(d0.astype(np.int8)) == 1)
        return bool(len(rises)) and bool((d0[rises[0] + 1:] == 0).any())

    def per_inference_uj(self, reply: InferReply) -> float | None:
        deadline = time.monotonic() + self.WINDOW_WAIT_S
        while not self._window_closed() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.stop_reading.set()
        self.reader.join()
        self.ppk2.stop_measuring()
        data = b"".join(self.chunks)
        if not data:
            raise PipelineError("the PPK2 sent no samples: is it powering the DUT (source meter) and is its port right?")
        current_ua, bits = self.ppk2.get_samples(data)
        d0 = np.asarray(bits[:len(current_ua)], dtype=np.int64) & 1  # D0 high: inside the timed loop
        if not d0.any():
            raise PipelineError("the PPK2 saw no timestamp window on D0: wire the DUT's timestamp pin (the board "
                                "file's [energy] timestamp_pin) to the PPK2's logic input D0")
        if d0[0] or d0[-1]:
            raise PipelineError("the PPK2's samples cut the timestamp window on D0 (it was high at the first or last "
                                "sample): the window was not recorded whole")
        rises = int((np.diff(d0) == 1).sum())
        if rises != 1:
            raise PipelineError(f"the PPK2 saw {rises} timestamp windows on D0 during one timed run, expected 1: is D0 "
                                "wired to the timestamp pin alone?")
        in_window = np.asarray(current_ua, dtype=float)[d0 == 1]
        energy_uj = float(in_window.sum()) * 1e-6 * self.SUPPLY_MV * 1e-3 * self.SAMPLE_S * 1e6
        self.window_us = len(in_window) * self.SAMPLE_S * 1e6
        return energy_uj / reply.iterations

    def close(self) -> None:
        if self.stop_reading is not None:
            self.stop_reading.set()
        self.ppk2.toggle_DUT_power("OFF")
        self.ppk2.ser.close()


class Lpm01aEnergy(EnergyMeter):
    """An ST X-NUCLEO-LPM01A power board ("PowerShield") powering the DUT at 3.3 V, with the DUT's timestamp pin (the
    board file's [energy] timestamp_pin) on the power board's D7. Set up as the MLCommons runner sets it up
    (mlcommons/tiny benchmark/runner, power_manager_lpm.py): host control, endless acquisition started by software,
    events on D7's falling edges, energy samples (joules a sample) in ascii_dec at 1 kHz. In performance mode the pin
    falls where the timed loop ends; the loop's energy is the sum of the samples over the loop's length (the firmware's
    own m-lap-us difference) before that event: one sample period (1 ms) of resolution at each end."""

    name = "lpm01a"
    label = "measured: power board (LPM01A)"
    needs_timestamp_pin = True
    BAUD = 3_686_400  # the runner's devices yaml; the PowerShield's virtual COM port
    SUPPLY_MV = 3300
    RATE_HZ = 1000
    REPLY_S = 2.0  # how long a command's acknowledgement may take
    WINDOW_WAIT_S = 5.0  # after the device's reply, how long the samples may take to show the window's end
    SETUP = ("htc", "acqtime inf", "trigdelay 0", "trigsrc sw", "eventsrc d7 fal", "output energy",
             "format ascii_dec", "freq 1k")

    def __init__(self, port: str):
        import queue
        import re
        import threading

        from pipeline.hil import transport

        self.port_name, self._sample = port, re.compile(r"\d{4}[+-]\d{2}")
        self.ser = transport.open_port(port, self.BAUD, timeout=0.05)
        self.messages: queue.Queue[str] = queue.Queue()
        self.samples: list[float] = []
        self.events: list[int] = []  # how many samples had come when each D7 event came
        self.stop_reading = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        try:
            for command in (*self.SETUP, f"volt {self.SUPPLY_MV}m", "pwr on nostatus"):
                self._command(command)
        except PipelineError:
            self.close()
            raise

    def _read(self) -> None:
        partial = b""
        while not self.stop_reading.is_set():
            try:
                data = self.ser.read(4096)
            except Exception:  # the port went away: the next command says so
                return
            if not data:
                continue
            *lines, partial = (partial + data).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").replace("PowerShield > ", "").strip()
                if self._sample.match(line):
                    self.samples.extend(float(v[:4] + "e" + v[4:]) for v in self._sample.findall(line))
                elif line.startswith("event "):
                    self.events.append(len(self.samples))
                elif line and not line.startswith("TimeStamp"):
                    self.messages.put(line)

    def _command(self, command: str, then: str | None = None) -> None:
        """Send a command and wait for its acknowledgement (and then for a line containing `then`)."""
        import queue

        while not self.messages.empty():
            self.messages.get_nowait()
        self.ser.write(command.encode() + b"\r\n")
        deadline = time.monotonic() + self.REPLY_S
        acked = False
        while time.monotonic() < deadline:
            try:
                line = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line.startswith("error") and command in line:
                detail = ""
                try:
                    detail = self.messages.get(timeout=0.5).replace("Error detail:", "").strip()
                except queue.Empty:
                    pass
                raise PipelineError(f"the power board on {self.port_name} refused '{command}'"
                                    f"{': ' + detail if detail else ''}")
            if line.startswith("ack") and command in line:
                acked = True
                if then is None:
                    return
            elif acked and then in line:
                return
        raise PipelineError(f"the power board on {self.port_name} did not acknowledge '{command}' within "
                            f"{self.REPLY_S:g} s: is it an LPM01A (PowerShield firmware) on that port "
                            "(--energy=lpm01a:PORT)?")

    def start(self) -> None:
        self.samples, self.events = [], []
        self._command("start")

    def per_inference_uj(self, reply: InferReply) -> float | None:
        deadline = time.monotonic() + self.WINDOW_WAIT_S
        while not self.events and time.monotonic() < deadline:
            time.sleep(0.01)
        self._command("stop", then="Acquisition completed")
        samples, events = list(self.samples), list(self.events)
        if not events:
            raise PipelineError("the power board saw no timestamp event on D7: wire the DUT's timestamp pin (the "
                                "board file's [energy] timestamp_pin) to the LPM01A's D7")
        if len(events) != 1:
            raise PipelineError(f"the power board saw {len(events)} falling edges on D7 during one timed run, "
                                "expected 1: is D7 wired to the timestamp pin alone?")
        end = events[0]
        count = round(reply.elapsed_us * self.RATE_HZ / 1e6)
        if count < 1 or count > end:
            raise PipelineError(f"the power board's samples do not cover the timed loop ({reply.elapsed_us} us, "
                                f"{end} samples before its end): the acquisition started late")
        self.window_us = count * 1e6 / self.RATE_HZ
        return sum(samples[end - count:end]) * 1e6 / reply.iterations

    def close(self) -> None:
        for command in ("pwr off", "hrc"):
            try:
                self._command(command)
            except (PipelineError, OSError):
                break
        self.stop_reading.set()
        self.reader.join(timeout=1)
        self.ser.close()


def meter_for(spec: str, board: Board) -> EnergyMeter:
    """--energy=estimate | firmware | ppk2:PORT | lpm01a:PORT"""
    kind, _, arg = spec.partition(":")
    if kind == "estimate":
        if board.active_power_mw is None:  # the default: a board without a power figure measures without energy
            return NoMeter(f"none: board {board.name} has no [power] active_mw")
        return EstimatedEnergy(board)
    if kind == "firmware":
        return FirmwareEnergy()
    if kind == "ppk2":
        if not arg:
            raise PipelineError("--energy=ppk2 needs the PPK2's port: --energy=ppk2:/dev/ttyACM1")
        return Ppk2Energy(arg)
    if kind == "lpm01a":
        if not arg:
            raise PipelineError("--energy=lpm01a needs the power board's port: --energy=lpm01a:/dev/ttyACM1")
        return Lpm01aEnergy(arg)
    if kind == "js220":
        raise PipelineError("--energy=js220 is not supported: the Joulescope JS220 is read over USB through the "
                            "joulescope package, not a serial port; measure with it through the MLCommons runner, "
                            "or use --energy=lpm01a:PORT or ppk2:PORT")
    raise PipelineError(f"unknown --energy '{spec}': use estimate, firmware, ppk2:PORT or lpm01a:PORT")


@dataclass
class BatteryLife:
    rate_hz: float
    battery_mah: float
    battery_v: float
    average_mw: float
    active_fraction: float
    hours: float
    rule: str


def average_power_mw(energy_uj: float, rate_hz: float, busy_fraction: float, sleep_mw: float) -> float:
    """The duty-cycle rule (measure --rate and invoke compare): energy x rate + sleep power x the idle fraction."""
    return energy_uj * rate_hz / 1000.0 + sleep_mw * (1.0 - busy_fraction)


def battery_life(energy_uj: float, latency_us: float, rate_hz: float, sleep_mw: float, battery_mah: float,
                 battery_v: float, energy_label: str, sleep_source: str) -> BatteryLife:
    """Duty cycle, the rule of `invoke compare` (pipeline.compare.battery uses average_power_mw): `rate_hz` inferences a second, each costing
    `energy_uj` over `latency_us`, the board asleep at `sleep_mw` the rest of the time; average power = energy x rate
    + sleep power x the idle fraction; hours = mAh x battery V / average mW (no regulator losses, no self-discharge:
    an estimate)."""
    if rate_hz <= 0 or battery_mah <= 0 or battery_v <= 0:
        raise PipelineError("--rate (inferences a second), --battery-mah and --battery-v must be positive")
    active = rate_hz * latency_us / 1e6
    if active >= 1.0:
        raise PipelineError(f"--rate={rate_hz:g} inferences a second leaves no time to sleep: one inference takes "
                            f"{latency_us:.0f} us, so at most {1e6 / latency_us:.1f} a second")
    average_mw = average_power_mw(energy_uj, rate_hz, active, sleep_mw)
    hours = battery_mah * battery_v / average_mw
    rule = (f"average {average_mw:.4g} mW = {energy_uj:.4g} uJ x {rate_hz:g}/s ({energy_label}) + sleep {sleep_mw:g} mW "
            f"x {1 - active:.4f} idle ({sleep_source}); {battery_mah:g} mAh x {battery_v:g} V, no regulator losses: "
            "an estimate")
    return BatteryLife(rate_hz, battery_mah, battery_v, average_mw, active, hours, rule)
