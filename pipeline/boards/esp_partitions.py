"""The ESP-IDF partition table of a rendered project, derived from the board file and checked before rendering.

The rules are ESP-IDF's (`gen_esp32part.py`, "Partition Tables" in its docs): the table itself sits at 0x8000
and takes one 4 KiB sector, so partitions start at 0x9000 or later; app partitions start on a 64 KiB boundary,
data partitions on a 4 KiB one; every size is a whole number of 4 KiB sectors; partitions do not overlap and
end inside the flash chip; names are unique and at most 16 bytes. A table breaking one of them is refused here
with the partition and the rule, instead of by ESP-IDF's build.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import PipelineError

TABLE_OFFSET = 0x8000
TABLE_SIZE = 0x1000
SECTOR = 0x1000
APP_ALIGN = 0x10000
MAX_NAME = 16
MB = 1024 * 1024


@dataclass(frozen=True)
class Partition:
    name: str
    type: str  # "app" or "data"
    subtype: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


# NVS (Wi-Fi calibration and settings, 24 KiB, ESP-IDF's default) and PHY init data, then the factory app.
FIXED = (Partition("nvs", "data", "nvs", 0x9000, 0x6000), Partition("phy_init", "data", "phy", 0xF000, 0x1000))
APP_OFFSET = 0x10000


def layout(board) -> list[Partition]:
    """`board`: a pipeline.boards.Board (its name, flash_chip_mb and flash_bytes are read)."""
    """NVS, PHY data and one factory app partition of the board's flash budget, on a flash chip of its size."""
    if board.flash_chip_mb is None:
        raise PipelineError(f"board {board.name}: an esp-idf board needs [memory] flash_chip_mb")
    chip = board.flash_chip_mb * MB
    room = chip - APP_OFFSET
    if board.flash_bytes > room:
        raise PipelineError(
            f"board {board.name}: [memory] flash_bytes {board.flash_bytes} (the app partition) does not fit a "
            f"{board.flash_chip_mb} MB flash chip after the bootloader, partition table, NVS and PHY data "
            f"(at most {room} bytes, 0x{room:x})")
    if board.flash_bytes % SECTOR:
        raise PipelineError(f"board {board.name}: [memory] flash_bytes {board.flash_bytes} (the app partition) must "
                            f"be a whole number of 4 KiB flash sectors, e.g. {board.flash_bytes // SECTOR * SECTOR}")
    partitions = [*FIXED, Partition("factory", "app", "factory", APP_OFFSET, board.flash_bytes)]
    check(partitions, chip)
    return partitions


def check(partitions: list[Partition], flash_bytes: int) -> None:
    """ESP-IDF's partition table rules; the first broken one is raised, naming the partition."""
    names = set()
    previous = None
    for p in sorted(partitions, key=lambda p: p.offset):
        where = f"partition '{p.name}' (offset 0x{p.offset:x}, size 0x{p.size:x})"
        if not p.name or len(p.name.encode()) > MAX_NAME:
            raise PipelineError(f"{where}: a name is 1 to {MAX_NAME} bytes")
        if p.name in names:
            raise PipelineError(f"{where}: the name is used twice")
        names.add(p.name)
        if p.type not in ("app", "data"):
            raise PipelineError(f"{where}: type must be app or data")
        if p.offset < TABLE_OFFSET + TABLE_SIZE:
            raise PipelineError(f"{where}: starts inside the bootloader or the partition table (below 0x9000)")
        align = APP_ALIGN if p.type == "app" else SECTOR
        if p.offset % align:
            raise PipelineError(f"{where}: {p.type} partitions start on a 0x{align:x} boundary")
        if p.size <= 0 or p.size % SECTOR:
            raise PipelineError(f"{where}: the size must be a positive multiple of 0x{SECTOR:x}")
        if previous is not None and p.offset < previous.end:
            raise PipelineError(f"{where}: overlaps '{previous.name}', which ends at 0x{previous.end:x}")
        if p.end > flash_bytes:
            raise PipelineError(f"{where}: ends at 0x{p.end:x}, past the {flash_bytes // MB} MB flash chip")
        previous = p


def render_csv(partitions: list[Partition]) -> str:
    rows = ["# Name,   Type, SubType, Offset,  Size"]
    rows += [f"{p.name + ',':<9} {p.type + ',':<5} {p.subtype + ',':<8} 0x{p.offset:x}, 0x{p.size:x}" for p in partitions]
    return "\n".join(rows) + "\n"


def parse_csv(text: str) -> list[Partition]:
    """Read a partition CSV back (hex or decimal offsets and sizes, K/M suffixes), for tests and checks."""
    def number(field: str) -> int:
        field = field.strip()
        scale = {"K": 1024, "M": MB}.get(field[-1:].upper(), 1)
        if scale > 1:
            field = field[:-1]
        return int(field, 0) * scale

    partitions = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, ptype, subtype, offset, size = [f.strip() for f in line.split(",")[:5]]
        partitions.append(Partition(name, ptype, subtype, number(offset), number(size)))
    return partitions
