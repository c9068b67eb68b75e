"""report.html for every build, findings.json, the budget gates and the firmware-image check."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import assert_clean_error, run_invoke

CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)")


def render(page, tmp_path, size="1300,2600"):
    """The page in headless Chromium: its DOM, a screenshot, and the console lines it logged."""
    dom = subprocess.run(CHROMIUM + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path / "page.png"
    proc = subprocess.run(CHROMIUM + [f"--screenshot={shot}", f"--window-size={size}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.read_bytes()[:4] == b"\x89PNG", proc.stderr[-2000:]
    console = [line for line in (dom.stderr + proc.stderr).splitlines() if ":CONSOLE" in line]
    return dom.stdout, shot, console


def colours(png) -> int:
    from PIL import Image

    return len(Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20) or [])


@needs_chromium
def test_every_build_writes_a_report_page(esp32_build, tmp_path):
    out = esp32_build["dir"]
    page = out / "report.html"
    text = page.read_text()
    assert "report.html" in esp32_build["proc"].stdout
    # Self-contained: no script, nothing fetched (the only URL is the SVG namespace).
    assert "<script" not in text and not re.search(r"(src|href)\s*=|url\(|@import", text)
    assert re.findall(r"https?://[^\"' ]+", text) == ["http://www.w3.org/2000/svg"]
    dom, shot, console = render(page, tmp_path)
    assert console == []
    report = esp32_build["report"]
    assert f"fits {report['board']}: tightest budget" in dom
    for heading in ("Findings", "Accuracy", "Fit on esp32", "Memory: the arena", "Per-layer profile"):
        assert heading in dom
    # the per-layer profile carries the layer options read from the .tflite
    assert "kernel 3x3, stride 1x1, same, relu" in dom and "pool 2x2, stride 2x2, valid" in dom
    # the packing chart: one rectangle per activation tensor, the peak's in red, the bound drawn
    assert dom.count("<rect") > 8 and "#e15759" in dom and "lower bound" in dom
    assert "ESTIMATE" in dom and "estimate" in dom
    assert colours(shot) > 200  # a rendered page, not a blank one
    findings = json.loads((out / "findings.json").read_text())
    codes = {f["code"]: f for f in findings["findings"]}
    assert codes["hot-layer"]["severity"] == "warning" and "layer #1 CONV_2D holds 81 %" in codes["hot-layer"]["message"]
    assert "removes ~75 % of its MACs" in codes["hot-layer"]["recommendation"]
    assert findings["counts"]["error"] == 0


def _two_class_folder(root, names):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for k in range(6):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / name / f"{k}.png")


@needs_chromium
def test_user_strings_are_escaped(esp32_build, tmp_path):
    """Class labels come from folder names (and an .npz's labels): markup in them is shown, never run."""
    folder = tmp_path / "data"
    _two_class_folder(folder, ["<script>alert(1)", "<img src=x onerror=alert(2)>"])
    build_dir = tmp_path / "b"
    proc = run_invoke("generate", f"--tflite={esp32_build['dir'] / 'model.tflite'}", f"--data={folder}",
                      "--board=esp32", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    page = build_dir / "esp32" / "model" / "report.html"
    text = page.read_text()
    assert "<script" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)" in text and "&lt;img src=x onerror=alert(2)&gt;" in text
    dom, _, console = render(page, tmp_path)
    assert console == [] and "<script" not in dom and "<img" not in dom
    assert "&lt;script&gt;alert(1)" in dom


def test_budget_gate_fails_the_build_and_says_why(esp32_build, tmp_path):
    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir)
    proc = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", "--fail-on=budget", "--max-latency-ms=5",
                      "--max-ram-kb=1000")
    line = assert_clean_error(proc, "--fail-on=budget", "latency estimate 11.18 ms exceeds --max-latency-ms=5")
    assert "RAM" not in line  # the RAM limit was met
    out = build_dir / "esp32" / "digits"
    findings = json.loads((out / "findings.json").read_text())
    errors = [f for f in findings["findings"] if f["severity"] == "error"]
    assert [f["code"] for f in errors] == ["budget-latency"] and errors[0]["budget"]
    assert "exceeds --max-latency-ms=5" in (out / "report.html").read_text()
    # the same limits without --fail-on: reported, not failed; a limit that holds passes the gate
    assert run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", "--max-latency-ms=5").returncode == 0
    ok = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", "--fail-on=budget", "--max-latency-ms=50",
                    "--max-flash-kb=400", "--max-energy-uj=5000")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads((out / "findings.json").read_text())["counts"]["error"] == 0


def test_bad_gate_options_are_one_line(tmp_path):
    assert_clean_error(run_invoke("build", "--fail-on=everything", f"--build-dir={tmp_path}"), "--fail-on")
    assert_clean_error(run_invoke("build", "--max-latency-ms=-1", f"--build-dir={tmp_path}"), "--max-latency-ms")
    assert_clean_error(run_invoke("build", "--max-ram-kb=lots", f"--build-dir={tmp_path}"), "--max-ram-kb")
    assert_clean_error(run_invoke("build", f"--elf={tmp_path / 'none.elf'}", f"--build-dir={tmp_path}"), "--elf", "none.elf")
    assert not any(tmp_path.iterdir())  # refused before anything was built


ELF_SOURCE = """
#include <stdint.h>
extern "C" const unsigned char g_model_data[] __attribute__((aligned(16)));
alignas(16) const unsigned char g_model_data[%(model)d] = {1, 2, 3};
alignas(16) uint8_t tensor_arena[%(arena)d];
int counter = 42;
extern "C" void _start(void) { while (1) { tensor_arena[counter %% %(arena)d] = g_model_data[counter++ %% %(model)d]; } }
"""


LINKER_SCRIPT = """
MEMORY { FLASH (rx) : ORIGIN = 0x08000000, LENGTH = 1M
         RAM (xrw)  : ORIGIN = 0x20000000, LENGTH = 256K }
SECTIONS {
  .text : { *(.text*) *(.rodata*) } > FLASH
  .data : { *(.data*) } > RAM AT > FLASH
  .bss (NOLOAD) : { *(.bss*) *(COMMON) } > RAM
}
"""


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="needs arm-none-eabi-g++")
def test_elf_check_reads_a_real_image(esp32_build, tmp_path):
    """A small real Cortex-M image with the model array and a static arena: its text/data/bss as binutils' size
    counts them, set against the fit estimate."""
    report = esp32_build["report"]
    src, elf, script, linker_map = tmp_path / "fw.cc", tmp_path / "fw.elf", tmp_path / "fw.ld", tmp_path / "fw.map"
    src.write_text(ELF_SOURCE % {"model": report["tflite_bytes"], "arena": report["arena_bytes"]})
    script.write_text(LINKER_SCRIPT)
    cc = subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-O1", "-nostdlib", "-T", str(script),
                         f"-Wl,-Map={linker_map}", "-o", str(elf), str(src)], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    size = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True).stdout
    berkeley = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True).stdout.splitlines()[1]
    text, data, bss = (int(v) for v in berkeley.split()[:3])
    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir)
    proc = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", f"--elf={elf}")
    assert proc.returncode == 0, proc.stderr[-2000:] + size
    check = json.loads((build_dir / "esp32" / "digits" / "report.json").read_text())["elf_check"]
    assert (check["text"], check["data"], check["bss"]) == (text, data, bss)
    assert check["arena_in_image"] and check["model_matches"] and check["ram_bytes"] == data + bss
    assert check["flash_error"] == pytest.approx(report["flash_bytes"] / (text + data) - 1, abs=1e-4)
    assert f"text {text:,} + data {data:,} + bss {bss:,} B" in proc.stdout
    findings = json.loads((build_dir / "esp32" / "digits" / "findings.json").read_text())["findings"]
    flash = next(f for f in findings if f["code"].startswith("elf-flash"))
    assert flash["severity"] == "warning" and "the fit estimate said 389,728 B" in flash["message"]
    # the linker map of the same image gives the same three figures
    proc = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", f"--elf={linker_map}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = json.loads((build_dir / "esp32" / "digits" / "report.json").read_text())["elf_check"]
    assert check["kind"] == "linker map" and (check["text"], check["data"], check["bss"]) == (text, data, bss)
    assert check["arena_in_image"] and check["model_matches"] is None
    # another model's image is caught, and a file that is no ELF is one line
    src.write_text(ELF_SOURCE % {"model": 1000, "arena": 64})
    subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-o", str(elf), str(src)], check=True)
    proc = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", f"--elf={elf}", "--fail-on=budget")
    assert_clean_error(proc, "another model")
    (tmp_path / "fw.bin").write_bytes(b"\0" * 64)
    assert_clean_error(run_invoke("build", "--board=esp32", f"--build-dir={build_dir}", f"--elf={tmp_path / 'fw.bin'}"),
                       "neither an ELF file nor a GNU ld linker map")


def test_compare_answers_which_board(esp32_build, tmp_path):
    from pipeline.boards import BOARDS_DIR

    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir)
    tiny = tmp_path / "tiny.toml"  # a board the model does not fit: a row that says so, not an error
    tiny.write_text((BOARDS_DIR / "esp32.toml").read_text().replace('name = "esp32"', 'name = "tiny"')
                    .replace("ram_bytes = 327680", "ram_bytes = 45000"))
    nosleep = tmp_path / "nosleep.toml"  # a board file without a sleep figure: its battery life is not guessed
    nosleep.write_text("\n".join(line for line in (BOARDS_DIR / "nucleo-l4r5zi.toml").read_text().splitlines()
                                  if not line.startswith("sleep_")).replace('name = "nucleo-l4r5zi"', 'name = "nosleep"'))
    proc = run_invoke("compare", f"--boards=esp32,esp32s3,{nosleep},{tiny},rp2040", "--rate=10/s",
                      "--battery-mah=500", "--sort=battery", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "train: done" not in proc.stdout and "board 5/5: rp2040" in proc.stdout  # trained once, by the build
    out = build_dir / "compare" / "digits"
    result = json.loads((out / "compare.json").read_text())
    rows = {r["board"]: r for r in result["rows"]}
    order = [r["board"] for r in result["rows"]]
    report = esp32_build["report"]
    # the esp32 row is the build's own figures; the S3's arena carries its ESP-NN scratch
    assert rows["esp32"]["arena_bytes"] == report["arena_bytes"] and rows["esp32"]["latency_us"] == report["latency_estimate_us"]
    # the S3's ESP-NN asks 9,408 B for digits' second convolution: TFLM's planner places it beside the tensors alive
    # at that op, so the arena holds it and ESP-NN's 1 KiB margin but stays below host need + scratch + margin
    assert rows["esp32s3"]["kernel_scratch_bytes"] == 9408
    assert 9408 + 1024 < rows["esp32s3"]["arena_bytes"] < report["arena_host_bytes"] + 9408 + 1024
    for r in (rows["esp32"], rows["esp32s3"]):  # battery life from the energy estimate and the sleep power
        average = 10 * r["energy_uj"] / 1000 + r["sleep_mw"] * (1 - 10 * r["latency_us"] / 1e6)
        assert r["battery_hours"] == pytest.approx(500 * 3.7 / average)
    assert rows["nosleep"]["battery_note"] == "no sleep figure" and rows["nosleep"]["battery_hours"] is None
    # boards the model fits first, longest battery life first, boards without a figure after
    hours = [rows[b]["battery_hours"] for b in order if rows[b]["fits"] and rows[b]["battery_hours"] is not None]
    assert hours == sorted(hours, reverse=True) and order.index("nosleep") >= len(hours)
    assert order.index("esp32s3") < order.index("esp32")
    assert order[-1] == "tiny" and rows["tiny"]["fits"] is False and rows["tiny"]["ram_headroom"] < 0
    assert rows["esp32s3"]["inferences_per_s_per_mw"] == pytest.approx(1000 / rows["esp32s3"]["energy_uj"])
    table = proc.stdout[proc.stdout.index("| board"):]
    assert table.index("esp32s3") < table.index("| esp32 ") < table.index("nosleep")
    assert "ESTIMATES" in proc.stdout and "no sleep figure" in table
    page = (out / "compare.html").read_text()
    best = next(b for b in order if rows[b]["fits"])
    assert f"{best}: the first board the model fits, by battery" in page and "<script" not in page
    # the board stages ran in the comparison's own folders: the user's build is as it was
    assert (out / "esp32s3" / "model.tflite").is_file() and not (build_dir / "esp32s3").exists()
    assert (build_dir / "esp32" / "digits" / "report.json").read_bytes() == (
        esp32_build["build_dir"] / "esp32" / "digits" / "report.json").read_bytes()
    again = run_invoke("compare", "--boards=esp32s3", f"--build-dir={build_dir}")
    assert again.returncode == 0 and "9,408" in again.stdout  # cached: nothing trained, same figures


def test_bad_compare_options_are_one_line(tmp_path):
    assert_clean_error(run_invoke("compare", "--sort=size", f"--build-dir={tmp_path}"), "--sort")
    assert_clean_error(run_invoke("compare", "--rate=fast", f"--build-dir={tmp_path}"), "--rate")
    assert_clean_error(run_invoke("compare", "--battery-mah=0", f"--build-dir={tmp_path}"), "--battery-mah")
    assert_clean_error(run_invoke("compare", "--boards=esp32,nope", f"--build-dir={tmp_path}"), "unknown board 'nope'")
    assert not any(tmp_path.iterdir())


NOISE = ("cuInit", "NodeDef mentions attribute", "use_unbounded_threadpool", "compiled metrics", "absl::InitializeLog",
         "oneDNN custom operations", "cudart_stub", "fully_quantize:", "XNNPACK delegate", "Epoch 1/", "ms/step")


def test_a_build_prints_only_the_projects_lines(esp32_build):
    """TensorFlow's C++ logs and Python warnings and Keras' per-epoch blocks stay off the console by default; each
    training stage prints one progress line (here, in a log: its last state)."""
    proc = esp32_build["proc"]
    output = proc.stdout + proc.stderr
    assert [n for n in NOISE if n in output] == []
    assert proc.stderr.strip() == ""
    train = [line for line in proc.stdout.splitlines() if line.startswith("  train: epoch ")]
    # in a log: a line every 15 s while it trains (with the ETA), then the last state once
    *running, last = train
    assert all(re.fullmatch(r"  train: epoch \d+/40, loss [\d.]+, val_accuracy [\d.]+, \d+ s, ETA \d+ s", line)
               for line in running), train
    assert re.fullmatch(r"  train: epoch \d+/40, loss [\d.]+, val_accuracy [\d.]+, \d+ s( \(early stop\))?", last)
    assert re.search(r"^  prune: epoch 10/10, loss [\d.]+, val_accuracy [\d.]+, \d+ s$", proc.stdout, re.M)
    assert re.search(r"^  QAT: epoch 5/5, ", proc.stdout, re.M)


def test_verbose_shows_keras_and_tensorflow(tmp_path):
    proc = run_invoke("train", "--epochs=1", "--verbose", f"--build-dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    from pipeline.quiet import NOISE as TF_LINE

    assert "val_loss: " in proc.stdout and "  train: epoch" not in proc.stdout  # Keras' own epoch line
    assert any(TF_LINE.match(line) for line in proc.stderr.splitlines())  # TensorFlow's C++ log lines


def test_a_model_that_does_not_fit_gets_a_page_saying_by_how_much(esp32_build, tmp_path):
    from pipeline.boards import BOARDS_DIR

    board = tmp_path / "tiny.toml"
    board.write_text((BOARDS_DIR / "esp32.toml").read_text().replace('name = "esp32"', 'name = "tiny"')
                     .replace("ram_bytes = 327680", "ram_bytes = 20000"))
    proc = run_invoke("generate", f"--tflite={esp32_build['dir'] / 'model.tflite'}", f"--board={board}",
                      f"--build-dir={tmp_path / 'b'}")
    line = assert_clean_error(proc, "does not fit tiny", "RAM", "report.html")
    out = tmp_path / "b" / "tiny" / "model"
    assert not (out / "report.json").exists()  # the build failed: no report.json, but the page says why
    ram = 20000 - 40960  # the budget less the runtime estimate alone is negative: over by all the rest
    page = (out / "report.html").read_text()
    report_ram = json.loads((out / "findings.json").read_text())["findings"][0]
    assert report_ram["code"] == "does-not-fit-ram" and report_ram["severity"] == "error"
    over = int(re.search(r"RAM ([\d,]+) B exceeds tiny's budget 20,000 B by ([\d,]+) B", report_ram["message"])
               .group(2).replace(",", ""))
    assert over > -ram and f"does NOT fit tiny: RAM is {over:,} B" in page and str(out / "report.html") in line


def test_packing_chart_shows_the_plan_the_firmware_uses(esp32_build, tmp_path):
    """Offsets from the offline plan embedded in the model where it carries one; otherwise TFLM's greedy plan,
    reconstructed and checked against the head TFLM measured."""
    from dataclasses import replace

    from pipeline.report import page
    from pipeline.target import graph, memplan

    source = esp32_build["dir"] / "model.tflite"
    g = graph.read(source)
    plan = memplan.plan(g)
    tflm = page.packing(g, source.read_bytes(), esp32_build["report"]["memory_plan"])
    assert "reconstructed" in tflm["source"] and "the same" in tflm["source"]
    assert tflm["head_bytes"] == esp32_build["report"]["memory_plan"]["tflm_head_bytes"]
    # a valid plan unlike the greedy one: every tensor mirrored top to bottom
    mirrored = {i: plan.head_bytes - plan.offsets[i] - plan.sizes[i] for i in plan.offsets}
    assert not memplan.overlaps(replace(plan, offsets=mirrored))
    embedded = tmp_path / "planned.tflite"
    embedded.write_bytes(memplan.embed(source.read_bytes(), replace(plan, offsets=mirrored), len(g.tensors)))
    pack = page.packing(graph.read(embedded), embedded.read_bytes(), None)
    assert {t["index"]: t["offset"] for t in pack["tensors"]} == mirrored != {t["index"]: t["offset"] for t in tflm["tensors"]}
    assert pack["source"].startswith("the offline plan embedded in the model")
    peak = [t for t in pack["tensors"] if t["peak"]]
    assert sum(t["size"] for t in peak) == pack["lower_bound_bytes"] == plan.lower_bound
