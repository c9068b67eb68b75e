"""A firmware image the user built, against the fit estimate: its real text, data and bss from the ELF's section
headers (the way binutils' `size` counts them, read here in Python so any target's ELF works: Xtensa, RISC-V,
Arm) or from a GNU ld linker map (read_map), and the model array and the arena where the image has them as
symbols.

text = allocated sections that are executable or read-only (in flash); data = allocated, writable, with contents
(in flash, copied to RAM at boot); bss = allocated without contents (RAM only). Flash = text + data;
static RAM = data + bss. An arena the firmware allocates at run time (ESP-IDF's heap_caps_aligned_alloc) is not
in the image: it is added to the RAM figure and said so.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.report.findings import Finding

SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHT_SYMTAB, SHT_NOBITS = 2, 8
MODEL_SYMBOL = "g_model_data"
ARENA_SYMBOL = "tensor_arena"
FAR_OFF = 0.2  # an estimate more than this far from the image is worth a warning


@dataclass
class Sections:
    text: int
    data: int
    bss: int
    symbols: dict[str, int | None]  # name -> size (None from a map: it gives addresses only), for those looked for
    kind: str = "ELF"  # or "linker map"


def read_sections(path: Path, wanted: tuple[str, ...] = (MODEL_SYMBOL, ARENA_SYMBOL)) -> Sections:
    raw = path.read_bytes()
    if b"Memory Configuration" in raw[:65536] and b"Linker script and memory map" in raw:
        return read_map(path, raw.decode(errors="replace"), wanted)
    if raw[:4] != b"\x7fELF":
        raise PipelineError(f"--elf={path}: neither an ELF file nor a GNU ld linker map (give the .elf or .map your "
                            "firmware build wrote, e.g. build/zephyr/zephyr.elf; a .bin or .hex has no sections)")
    if len(raw) < 0x34 or raw[4] not in (1, 2) or raw[5] not in (1, 2):
        raise PipelineError(f"--elf={path}: a truncated or malformed ELF header")
    wide, end = raw[4] == 2, "<" if raw[5] == 1 else ">"
    try:
        if wide:
            shoff, = struct.unpack_from(end + "Q", raw, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", raw, 0x3A)
            layout = end + "IIQQQQIIQQ"
        else:
            shoff, = struct.unpack_from(end + "I", raw, 0x20)
            shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", raw, 0x2E)
            layout = end + "IIIIIIIIII"
        headers = [struct.unpack_from(layout, raw, shoff + i * shentsize) for i in range(shnum)]
    except struct.error:
        raise PipelineError(f"--elf={path}: its section headers run past the end of the file (truncated?)") from None
    if not headers:
        raise PipelineError(f"--elf={path}: no section headers (stripped of them?): cannot count text, data, bss")
    text = data = bss = 0
    for name, kind, flags, _addr, _offset, size, *_ in headers:
        if not flags & SHF_ALLOC:
            continue
        if kind == SHT_NOBITS:
            bss += size
        elif flags & SHF_EXECINSTR or not flags & SHF_WRITE:
            text += size
        else:
            data += size
    symbols = {}
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in headers:
        if kind != SHT_SYMTAB or not entsize:
            continue
        strtab = headers[link]
        names = raw[strtab[4]:strtab[4] + strtab[5]]
        for k in range(size // entsize):
            at = offset + k * entsize
            if wide:
                name_at, _info, _other, _shndx, _value, sym_size = struct.unpack_from(end + "IBBHQQ", raw, at)
            else:
                name_at, _value, sym_size, _info, _other, _shndx = struct.unpack_from(end + "IIIBBH", raw, at)
            name = names[name_at:names.index(b"\0", name_at)].decode(errors="replace")
            for w in wanted:  # a global's own name, or C++'s mangled one in a namespace (_ZN...12g_model_dataE)
                if name == w or (name.startswith("_Z") and f"{len(w)}{w}" in name):
                    symbols[w] = sym_size
    return Sections(text, data, bss, symbols)


_REGION = re.compile(r"^(\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s*(\S*)\s*$")
_SYMBOL = re.compile(r"^\s+0x([0-9a-fA-F]+)\s+(\S+)\s*$")


def read_map(path: Path, text: str, wanted: tuple[str, ...]) -> Sections:
    """A GNU ld map: each output section (a line starting in column 0, its address and size on the same line or
    the next) is text when it lies in a MEMORY region without the w attribute, bss when it lies in a writable one
    and its name says bss or noinit, data otherwise. Sections outside every region (debug info) do not count. A map
    gives symbols' addresses, not sizes: the model-array check needs the ELF."""
    config, _, layout = text.partition("Linker script and memory map")
    regions = []
    for line in config.splitlines():
        m = _REGION.match(line)
        if m and m.group(1) not in ("Name", "*default*"):
            regions.append((int(m.group(2), 16), int(m.group(2), 16) + int(m.group(3), 16),
                            "w" in m.group(4).lower()))
    if not regions:
        raise PipelineError(f"--elf={path}: the linker map has no MEMORY regions to tell flash from RAM: pass the ELF")
    text_bytes = data = bss = 0
    lines = layout.splitlines()
    symbols: dict[str, int | None] = {}
    for k, line in enumerate(lines):
        if not line or line[0].isspace():
            m = _SYMBOL.match(line)
            if m and m.group(2) in wanted:
                symbols[m.group(2)] = None
            continue
        name = line.split()[0]
        rest = line[len(name):].split()
        if not rest and k + 1 < len(lines):  # a long name: address and size on the next line
            rest = lines[k + 1].split()
        if len(rest) < 2 or not rest[0].startswith("0x") or not rest[1].startswith("0x"):
            continue
        address, size = int(rest[0], 16), int(rest[1], 16)
        region = next((r for r in regions if r[0] <= address < r[1]), None)
        if region is None or size == 0:
            continue
        if not region[2]:
            text_bytes += size
        elif "bss" in name or "noinit" in name:
            bss += size
        else:
            data += size
    return Sections(text_bytes, data, bss, symbols, "linker map")


@dataclass
class ElfCheck:
    path: str
    kind: str  # ELF or linker map
    text: int
    data: int
    bss: int
    flash_bytes: int  # text + data
    static_ram_bytes: int  # data + bss
    ram_bytes: int  # static RAM, + the arena where the firmware allocates it at run time
    arena_in_image: bool
    model_symbol_bytes: int | None  # g_model_data's size in the image
    model_matches: bool | None  # g_model_data is this model's size (None: no such symbol)
    flash_estimate: int
    ram_estimate: int
    flash_error: float  # estimate / real - 1
    ram_error: float
    flash_budget: int
    ram_budget: int
    note: str


def check(path: Path, report: dict) -> ElfCheck:
    s = read_sections(Path(path))
    arena_in_image = ARENA_SYMBOL in s.symbols
    ram = s.data + s.bss + (0 if arena_in_image else report["arena_bytes"])
    flash = s.text + s.data
    notes = []
    if not arena_in_image:
        notes.append(f"no `{ARENA_SYMBOL}` symbol in the image: the arena ({report['arena_bytes']:,} B) is taken as "
                     "allocated at run time and added to the RAM figure")
    model = s.symbols.get(MODEL_SYMBOL)
    if s.kind == "linker map":
        notes.append(f"a linker map gives no symbol sizes: `{MODEL_SYMBOL}` is not checked against this model "
                     "(pass the ELF for that)")
    elif model is None:
        notes.append(f"no `{MODEL_SYMBOL}` symbol: is this the image of this model?")
    elif model != report["tflite_bytes"]:
        notes.append(f"its `{MODEL_SYMBOL}` is {model:,} B but this model is {report['tflite_bytes']:,} B: "
                     "the image holds another model (rebuild the firmware)")
    notes.append("stacks and the heap the SDK uses at run time are not in an image: the real RAM use is higher")
    return ElfCheck(str(path), s.kind, s.text, s.data, s.bss, flash, s.data + s.bss, ram, arena_in_image, model,
                    None if model is None else model == report["tflite_bytes"],
                    report["flash_bytes"], report["ram_bytes"], round(report["flash_bytes"] / flash - 1, 4) if flash else 0.0,
                    round(report["ram_bytes"] / ram - 1, 4) if ram else 0.0, report["flash_budget_bytes"],
                    report["ram_budget_bytes"], "; ".join(notes))


def findings(c: dict) -> list[Finding]:
    """How far the fit estimate was from the image, and whether the image itself fits."""
    out = []
    for what, real, estimate, error, budget in (("flash", c["flash_bytes"], c["flash_estimate"], c["flash_error"], c["flash_budget"]),
                                                ("RAM", c["ram_bytes"], c["ram_estimate"], c["ram_error"], c["ram_budget"])):
        parts = ("text + data" if what == "flash" else "data + bss" + ("" if c["arena_in_image"] else " + arena"))
        message = (f"the firmware image {Path(c['path']).name}: {what} {real:,} B ({parts}); the fit estimate said "
                   f"{estimate:,} B ({100 * error:+.1f} %)")
        if real > budget:
            out.append(Finding("error", f"elf-{what.lower()}-over", message + f", over the {budget:,} B budget", "the "
                               "real image does not fit: shrink the model or the application", True))
        elif abs(error) > FAR_OFF:
            out.append(Finding("warning", f"elf-{what.lower()}", message, "put the measured runtime figure in the board "
                               "file's [runtime] (image size less the model and the arena), with its source"))
        else:
            out.append(Finding("info", f"elf-{what.lower()}", message, ""))
    if c["model_matches"] is False:
        out.append(Finding("error", "elf-model", f"the firmware image's `{MODEL_SYMBOL}` is {c['model_symbol_bytes']:,} B, "
                           f"not this model's size: the image holds another model",
                           "rebuild the firmware from this build's generated/ sources", True))
    return out


def summary(c: dict) -> str:
    return (f"  firmware image {c['path']}: text {c['text']:,} + data {c['data']:,} + bss {c['bss']:,} B -> flash "
            f"{c['flash_bytes']:,} B (estimate {c['flash_estimate']:,}, {100 * c['flash_error']:+.1f} %), RAM "
            f"{c['ram_bytes']:,} B (estimate {c['ram_estimate']:,}, {100 * c['ram_error']:+.1f} %); {c['note']}")
