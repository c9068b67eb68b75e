"""Energy per inference, from one of three sources behind one interface:

- ppk2: a Nordic Power Profiler Kit II through `ppk2-api`, integrating current only while the DUT's timestamp
  GPIO (wired to the PPK2's logic input D0) marks the timed loop, as MLPerf Tiny's energy monitors do;
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


def meter_for(spec: str, board: Board) -> EnergyMeter:
    """--energy=estimate | firmware | ppk2:PORT"""
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
    raise PipelineError(f"unknown --energy '{spec}': use estimate, firmware or ppk2:PORT")


@dataclass
class BatteryLife:
    rate_hz: float
    battery_mah: float
    battery_v: float
    average_mw: float
    active_fraction: float
    hours: float
    rule: str


def battery_life(energy_uj: float, latency_us: float, rate_hz: float, sleep_mw: float, battery_mah: float,
                 battery_v: float, energy_label: str, sleep_source: str) -> BatteryLife:
    """Duty cycle, the rule of `invoke compare` (pipeline.compare.battery): `rate_hz` inferences a second, each costing
    `energy_uj` over `latency_us`, the board asleep at `sleep_mw` the rest of the time; average power = energy x rate
    + sleep power x the idle fraction; hours = mAh x battery V / average mW (no regulator losses, no self-discharge:
    an estimate)."""
    if rate_hz <= 0 or battery_mah <= 0 or battery_v <= 0:
        raise PipelineError("--rate (inferences a second), --battery-mah and --battery-v must be positive")
    active = rate_hz * latency_us / 1e6
    if active >= 1.0:
        raise PipelineError(f"--rate={rate_hz:g} inferences a second leaves no time to sleep: one inference takes "
                            f"{latency_us:.0f} us, so at most {1e6 / latency_us:.1f} a second")
    average_mw = energy_uj * rate_hz / 1000.0 + sleep_mw * (1.0 - active)
    hours = battery_mah * battery_v / average_mw
    rule = (f"average {average_mw:.4g} mW = {energy_uj:.4g} uJ x {rate_hz:g}/s ({energy_label}) + sleep {sleep_mw:g} mW "
            f"x {1 - active:.4f} idle ({sleep_source}); {battery_mah:g} mAh x {battery_v:g} V, no regulator losses: "
            "an estimate")
    return BatteryLife(rate_hz, battery_mah, battery_v, average_mw, active, hours, rule)
