"""Energy per inference, from one of three sources behind one interface:

- ppk2: a Nordic Power Profiler Kit II through `ppk2-api`, integrating current only while the DUT's timestamp
  GPIO (wired to the PPK2's logic input D0) marks the timed loop, as MLPerf Tiny's energy monitors do;
- firmware: an on-board meter the firmware reports as "m-x-energy-uj-N" for the timed loop;
- estimate: the board file's active power x the measured latency, labelled "estimated" in every output.
"""
from __future__ import annotations

from pipeline.boards import Board
from pipeline.errors import PipelineError
from pipeline.hil.dut import InferReply


class EnergyMeter:
    name = ""
    label = "measured"  # or "estimated"

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
    label = "estimated"

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

    def per_inference_uj(self, reply: InferReply) -> float:
        if "energy-uj" not in reply.extra:
            raise PipelineError("the firmware reported no m-x-energy-uj line: it has no on-board meter; "
                                "use --energy=estimate or --energy=ppk2:PORT")
        return float(reply.extra["energy-uj"]) / reply.iterations


class Ppk2Energy(EnergyMeter):
    """Needs a PPK2 in source-meter mode powering the DUT, and the DUT's timestamp pin on logic input D0."""

    name = "ppk2"
    SUPPLY_MV = 3300

    def __init__(self, port: str):
        try:
            from ppk2_api.ppk2_api import PPK2_API
        except ImportError:
            raise PipelineError("--energy=ppk2 needs the ppk2-api package: pip install ppk2-api") from None
        try:
            self.ppk2 = PPK2_API(port)
            self.ppk2.get_modifiers()
            self.ppk2.use_source_meter()
            self.ppk2.set_source_voltage(self.SUPPLY_MV)
            self.ppk2.toggle_DUT_power("ON")
        except Exception as exc:  # the library raises plain serial errors and its own asserts
            raise PipelineError(f"cannot use the PPK2 on {port}: {exc}") from None
        self.samples: list[float] = []
        self.window: list[int] = []

    def start(self) -> None:
        self.ppk2.start_measuring()

    def per_inference_uj(self, reply: InferReply) -> float | None:
        data = self.ppk2.get_data()
        self.ppk2.stop_measuring()
        if not data:
            return None
        current_ua, bits = self.ppk2.get_samples(data)
        in_window = [ua for ua, b in zip(current_ua, bits) if b & 1]  # D0 high: inside the timed loop
        if not in_window:
            raise PipelineError("the PPK2 saw no timestamp window on D0: wire the DUT's timestamp pin to D0")
        sample_s = 1e-5  # the PPK2 samples at 100 kHz
        energy_uj = sum(in_window) * 1e-6 * self.SUPPLY_MV * 1e-3 * sample_s * 1e6
        return energy_uj / reply.iterations

    def close(self) -> None:
        self.ppk2.toggle_DUT_power("OFF")


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
