"""Which board for this model: one model on several boards, a row each, in one table and one HTML page.

The board-independent stages (train, optimize, convert, validate) run once through the stage cache; the board
stages (generate: arena with that board's kernel scratch; profile: the latency and energy ESTIMATE from the board's
cost model) run per board, in the comparison's own folder (build/compare/<model>/<board>/, cached there for the
next comparison), so the user's build folders are never touched. A model that does not fit a board is a row that
says so, not an error.

Battery life at a duty cycle: each second the board runs `rate` inferences (energy estimate each) and sleeps the
rest at the board file's [power] sleep_mw; hours = battery mAh x battery V / average mW (no regulator losses,
no self-discharge: an estimate, labelled so).
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from pipeline import boards
from pipeline.build import Options, Pipeline
from pipeline.cache import write_atomic
from pipeline.errors import PipelineError
from pipeline.target import fit

SORTS = ("latency", "energy", "headroom", "battery")
FILES = ("compare.json", "compare.md", "compare.html")


@dataclass
class CompareOptions:
    pipeline: Options
    boards: list[str] = field(default_factory=list)  # names or paths; empty: every board in boards/
    rate_per_s: float = 1.0
    battery_mah: float = 1000.0
    battery_v: float = 3.7
    sort: str = "latency"
    out_dir: Path | None = None


@dataclass
class Row:
    board: str
    description: str
    core: str
    clock_mhz: int
    kernels: str
    fits: bool | None = None
    flash_bytes: int | None = None
    flash_budget: int | None = None
    ram_bytes: int | None = None
    ram_budget: int | None = None
    arena_bytes: int | None = None
    kernel_scratch_bytes: int | None = None
    latency_us: float | None = None  # ESTIMATE
    energy_uj: float | None = None  # ESTIMATE (active_mw x latency)
    cost_model: str | None = None
    cost_source: str | None = None
    cycles_per_instruction: float | None = None
    cpi_source: str | None = None
    active_mw: float | None = None
    sleep_mw: float | None = None
    sleep_source: str | None = None
    inferences_per_s_per_mw: float | None = None
    average_mw: float | None = None
    battery_hours: float | None = None
    battery_note: str = ""
    error: str | None = None
    emulated: bool = False  # a QEMU machine, not a board: never the pick

    @property
    def flash_headroom(self) -> int | None:
        return None if self.flash_bytes is None else self.flash_budget - self.flash_bytes

    @property
    def ram_headroom(self) -> int | None:
        return None if self.ram_bytes is None else self.ram_budget - self.ram_bytes

    @property
    def headroom_fraction(self) -> float | None:
        """The tighter of the two budgets' spare fraction."""
        if self.flash_bytes is None:
            return None
        return min(self.flash_headroom / self.flash_budget, self.ram_headroom / self.ram_budget)


def parse_rate(text: str) -> float:
    """`10`, `10/s`, `30/min`, `2/h` -> inferences per second."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(?:/\s*(s|sec|min|h))?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise PipelineError(f"--rate must be a positive number of inferences per second, minute or hour, e.g. 10/s, "
                            f"30/min, 2/h (got {text!r})")
    return float(m.group(1)) / {None: 1, "s": 1, "sec": 1, "min": 60, "h": 3600}[m.group(2)]


def battery(row: Row, rate: float, mah: float, volts: float) -> None:
    """Average power and battery life at `rate` inferences per second, sleeping in between."""
    if row.latency_us is None or row.energy_uj is None:
        row.battery_note = "no active power figure"
        return
    busy = rate * row.latency_us / 1e6  # fraction of each second spent inferring
    if busy > 1:
        row.battery_note = f"cannot keep up: {rate:g}/s needs {busy:.1f} s of inference per second"
        return
    if row.sleep_mw is None:
        row.battery_note = "no sleep figure"
        return
    row.average_mw = rate * row.energy_uj / 1000 + row.sleep_mw * (1 - busy)
    row.battery_hours = mah * volts / row.average_mw


def compare_board(p: Pipeline, board: boards.Board, board_dir: Path) -> Row:
    row = Row(board.name, board.description, board.core, board.clock_mhz, board.kernels,
              active_mw=board.active_power_mw, sleep_mw=board.sleep_power_mw, sleep_source=board.sleep_power_source,
              emulated=board.qemu_machine is not None)
    board_dir.mkdir(parents=True, exist_ok=True)
    generated = p.generate(board, board_dir)
    arena = generated["arena"]
    info = p.model_info()
    result = fit.check(board, info.size_bytes, arena["arena_bytes"], generated["sample_bytes"])
    profile = p.profile(board, board_dir)
    totals = profile["totals"]
    row.fits = result.fits
    row.flash_bytes, row.flash_budget = result.flash_bytes, result.flash_budget
    row.ram_bytes, row.ram_budget = result.ram_bytes, result.ram_budget
    row.arena_bytes, row.kernel_scratch_bytes = arena["arena_bytes"], arena["kernel_scratch_bytes"]
    row.latency_us, row.energy_uj = totals["est_us"], totals["est_energy_uj"]
    row.cost_model, row.cost_source = profile["cost_model"], profile["cost_source"]
    row.cycles_per_instruction, row.cpi_source = profile["cycles_per_instruction"], profile["cpi_source"]
    if row.energy_uj:
        row.inferences_per_s_per_mw = 1000.0 / row.energy_uj  # (1 / latency s) / active mW = 1 / energy mJ
    return row


def sort_rows(rows: list[Row], key: str) -> list[Row]:
    if key not in SORTS:
        raise PipelineError(f"--sort must be one of {', '.join(SORTS)} (got {key!r})")
    big = float("inf")
    keys = {"latency": lambda r: r.latency_us if r.latency_us is not None else big,
            "energy": lambda r: r.energy_uj if r.energy_uj is not None else big,
            "headroom": lambda r: -r.headroom_fraction if r.headroom_fraction is not None else big,
            "battery": lambda r: -r.battery_hours if r.battery_hours is not None else big}
    # boards the model fits first, then by the chosen figure; errors last
    return sorted(rows, key=lambda r: (r.error is not None, not r.fits, keys[key](r)))


def check(opts: CompareOptions) -> list[boards.Board]:
    if opts.sort not in SORTS:
        raise PipelineError(f"--sort must be one of {', '.join(SORTS)} (got {opts.sort!r})")
    for name, value in (("battery-mah", opts.battery_mah), ("battery-v", opts.battery_v)):
        if value <= 0:
            raise PipelineError(f"--{name} must be positive (got {value:g})")
    if opts.pipeline.precision != "int8":
        raise PipelineError("compare needs an int8 model (boards run int8 firmware): drop --precision")
    return [boards.load_board(b) for b in opts.boards] if opts.boards else boards.all_boards()


def run(opts: CompareOptions, log: Callable[[str], None] = print) -> dict:
    chosen = check(opts)
    first = Pipeline(replace(opts.pipeline, board=str(chosen[0].source or chosen[0].name)), log=log)
    log(f"model {first.model_name}: the board-independent stages (once, through the stage cache) ...")
    first.validate()
    if not first.byo:
        first.quant_debug()  # as a build does, so the profiles here are the ones a later build finds cached
    first.log = lambda line: None  # the board stages: one progress line per board instead of eight
    out_dir = opts.out_dir or opts.pipeline.build_root / "compare" / first.model_name
    rows = []
    for k, board in enumerate(chosen, 1):
        log(f"board {k}/{len(chosen)}: {board.name} (arena with its {board.kernels} kernels, cost model) ...")
        try:
            row = compare_board(first, board, out_dir / board.name)
        except PipelineError as exc:
            row = Row(board.name, board.description, board.core, board.clock_mhz, board.kernels, error=str(exc))
        battery(row, opts.rate_per_s, opts.battery_mah, opts.battery_v)
        rows.append(row)
    rows = sort_rows(rows, opts.sort)
    result = {"model": first.model_name, "sort": opts.sort, "rate_per_s": opts.rate_per_s,
              "battery_mah": opts.battery_mah, "battery_v": opts.battery_v, "label": "estimate",
              "rows": [{**asdict(r), "flash_headroom": r.flash_headroom, "ram_headroom": r.ram_headroom}
                       for r in rows]}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "compare.json", json.dumps(result, indent=2))
    write_atomic(out_dir / "compare.md", table(result, rows))
    write_atomic(out_dir / "compare.html", page(result, rows))
    result["out_dir"] = str(out_dir)
    return result


def _n_mw(v: float | None) -> str:
    return "none in the board file" if v is None else f"{v:g} mW"


def _hours(h: float | None, note: str) -> str:
    if h is None:
        return note
    return f"{h / 24:,.1f} days" if h >= 48 else f"{h:,.1f} h"


def _cells(r: Row) -> list[str]:
    if r.error:
        return [r.board, "error", r.error, "", "", "", "", "", "", ""]
    kib = lambda n: f"{n / 1024:,.1f}"  # noqa: E731
    return [r.board, "yes" if r.fits else "NO", f"{kib(r.flash_headroom)} ({100 * r.flash_headroom / r.flash_budget:.0f}%)",
            f"{kib(r.ram_headroom)} ({100 * r.ram_headroom / r.ram_budget:.0f}%)",
            f"{r.arena_bytes:,} ({r.kernel_scratch_bytes:,})", f"{r.latency_us / 1000:,.3f}",
            "no power figure" if r.energy_uj is None else f"{r.energy_uj:,.1f}",
            "" if r.inferences_per_s_per_mw is None else f"{r.inferences_per_s_per_mw:,.2f}",
            _hours(r.battery_hours, r.battery_note), f"{r.cost_model} x{r.cycles_per_instruction:g}"]


HEAD = ["board", "fits", "flash headroom KiB", "RAM headroom KiB", "arena B (kernel scratch)", "latency ms (est.)",
        "energy uJ (est.)", "inf/s per mW", "battery (est.)", "cost model x CPI"]


def table(result: dict, rows: list[Row]) -> str:
    """The comparison as a plain-text table (also compare.md)."""
    cells = [HEAD] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEAD))]
    lines = [f"{result['model']} on {len(rows)} boards, sorted by {result['sort']}; latency, energy and battery life "
             f"are ESTIMATES (cost model per board; battery: {result['rate_per_s']:g} inferences/s, "
             f"{result['battery_mah']:g} mAh at {result['battery_v']:g} V, sleeping in between)", ""]
    for n, c in enumerate(cells):
        lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines) + "\n"


def page(result: dict, rows: list[Row]) -> str:
    from pipeline.report.page import STYLE

    esc = html.escape
    ok = [r for r in rows if r.fits and not r.error]
    best = next((r.board for r in ok if not r.emulated), None)
    longest = max((r.latency_us for r in ok), default=1) or 1
    body, sources = [], []
    for r in rows:
        c = _cells(r)
        bar = ("" if r.error or r.latency_us is None else
               f'<div class="share"><div style="width:{100 * min(r.latency_us / longest, 1):.1f}%"></div></div>')
        cls = "err" if r.error else ("" if r.fits else "nofit")
        body.append(f'<tr class="{cls}"><td><b>{esc(c[0])}</b>{" (QEMU)" if r.emulated else ""}<div class="note">'
                    f'{esc(r.core)} {r.clock_mhz} MHz, {esc(r.kernels)}</div></td>'
                    + "".join(f"<td>{esc(v)}</td>" for v in c[1:5]) + f"<td>{esc(c[5])}{bar}</td>"
                    + "".join(f"<td>{esc(v)}</td>" for v in c[6:]) + "</tr>")
        if not r.error:
            sources.append(f'<li><b>{esc(r.board)}</b> ({esc(r.description)}): cost model {esc(r.cost_model or "")}: '
                           f'{esc(r.cost_source or "")}; cycles per instruction {r.cycles_per_instruction:g}: '
                           f'{esc(r.cpi_source or "")}; active power: {_n_mw(r.active_mw)}; sleep: '
                           f'{esc(r.sleep_source or "no sleep figure")}</li>')
    pick = (f'{esc(best)}: the first board the model fits, by {esc(result["sort"])}' if best
            else "the model fits none of these boards")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(result["model"])}: which board'
            f'</title><style>{STYLE}.cmp td{{vertical-align:top}}.cmp th,.cmp td{{white-space:normal}}.cmp th{{vertical-align:bottom}}.cmp td:first-child,.cmp th:first-child{{text-align:left}}'
            f'.cmp td:nth-child(2),.cmp td:nth-child(3),.cmp td:nth-child(4),.cmp th:nth-child(3),.cmp th:nth-child(4)'
            f'{{text-align:right}}.src{{font-size:12px;color:#3e4c59}}.src li{{margin:4px 0}}tr.nofit td{{color:#c53030}}tr.err td{{color:#7b8794}}</style></head><body><main>'
            f'<h1>Which board for {esc(result["model"])}</h1><div class="banner {"ok" if best else "bad"}">{pick}</div>'
            f'<div class="card"><p class="note">Latency, energy and battery life are ESTIMATES: each board\'s cost model '
            f'(per-operator coefficients x its cycles per instruction), energy = the board file\'s active power x latency, '
            f'battery = {result["battery_mah"]:g} mAh x {result["battery_v"]:g} V at {result["rate_per_s"]:g} inferences/s, '
            'sleeping at the board file\'s sleep power in between (no regulator losses). Flash and RAM: model + sample + '
            'runtime, arena + input + runtime, against the board file\'s budgets.</p><div class="scroll">'
            f'<table class="grid cmp"><thead><tr>{"".join(f"<th>{esc(h)}</th>" for h in HEAD[:-1])}<th>cost model</th>'
            f'</tr></thead><tbody>{"".join(body)}</tbody></table></div></div>'
            f'<div class="card"><h2>Where each board\'s figures come from</h2><ul class="src">{"".join(sources)}</ul></div>'
            '</main></body></html>')
