"""Faults the reader reports. Each message names the port and the next step, as esptool's do."""
from pipeline.errors import PipelineError


class DeviceError(PipelineError):
    """The device answered with an e-[...] error."""


class DeviceTimeout(PipelineError):
    """The device did not finish a command in time (after retries where the command can be repeated)."""


class DeviceReset(PipelineError):
    """The device rebooted in the middle of a run (its boot banner appeared)."""


class WrongFirmware(PipelineError):
    """The firmware on the device is not built from the model being measured."""
