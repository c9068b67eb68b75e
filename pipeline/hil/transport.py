"""Opening the serial port: a device path or a pyserial URL (socket://, rfc2217://, loop://), or found by the
board's USB VID:PID. Failures become one line naming the port and the next step."""
from __future__ import annotations

import errno
from pathlib import Path

from pipeline.errors import PipelineError


def find_port(usb_ids: tuple[str, ...], board_name: str) -> str:
    """The one serial port whose USB VID:PID is listed for the board."""
    from serial.tools import list_ports

    wanted = {tuple(int(part, 16) for part in vid_pid.split(":")) for vid_pid in usb_ids}
    found = [p.device for p in list_ports.comports() if p.vid is not None and (p.vid, p.pid) in wanted]
    if not found:
        ids = ", ".join(usb_ids) or "none listed"
        raise PipelineError(f"no serial port of a {board_name} found (USB ids {ids}): plug the board in, or pass --port")
    if len(found) > 1:
        raise PipelineError(f"several {board_name} ports found ({', '.join(found)}): pick one with --port")
    return found[0]


def find_port_by_serial(serial_number: str, what: str) -> str:
    """The serial port of the USB device with this serial number (a rig tells identical boards apart by it)."""
    from serial.tools import list_ports

    found = [p.device for p in list_ports.comports() if p.serial_number == serial_number]
    if not found:
        raise PipelineError(f"no serial port with USB serial number {serial_number} for {what}: check that it is "
                            "plugged in (`python -m serial.tools.list_ports -v` lists them), or give its port")
    if len(found) > 1:
        # a probe with two CDC interfaces shows its number on both: only the user knows which one is the UART
        raise PipelineError(f"several ports have USB serial number {serial_number} ({', '.join(found)}) for {what}: "
                            "give the port instead")
    return found[0]


def open_port(port: str, baud: int, timeout: float = 0.05):
    """Open a serial port exclusively, so a second reader cannot interleave commands with ours."""
    import serial

    is_url = "://" in port
    if not is_url and not Path(port).exists():
        raise PipelineError(f"serial port {port} does not exist: check the cable and the port name (--port)")
    try:
        if is_url:
            return serial.serial_for_url(port, baudrate=baud, timeout=timeout)
        return serial.Serial(port, baudrate=baud, timeout=timeout, exclusive=True)
    except serial.SerialException as exc:
        code = getattr(exc, "errno", None)
        if code in (errno.EBUSY, errno.EAGAIN) or "lock" in str(exc).lower() or "busy" in str(exc).lower():
            raise PipelineError(f"serial port {port} is busy: close the other program using it (a monitor, "
                                "another measure run) and try again") from None
        if code == errno.EACCES:
            raise PipelineError(f"no permission to open {port}: add yourself to the dialout group") from None
        raise PipelineError(f"cannot open serial port {port}: {exc}") from None
