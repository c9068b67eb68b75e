"""The command line as a user meets it: help and flags of every task, unwritable build folders, Ctrl-C."""
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, assert_clean_error, run_invoke

OPTION = re.compile(r"^  (?:-(\w) \S+, )?--([\w-]*)(?:=\S+)?(?:\s+(.*))?$")


def _task_names() -> list[str]:
    proc = run_invoke("--list", "--list-format=json")
    assert proc.returncode == 0, proc.stderr
    return [t["name"] for t in json.loads(proc.stdout)["tasks"]]


def test_every_tasks_help_has_text_for_every_option_and_consistent_short_flags():
    shorts: dict[str, set[str]] = {}
    for name in _task_names():
        # `invoke TASK --help`, as users type it: a task with a positional argument took `--help` as its value
        # and ran (firmware-qemu, firmware-host, calibrate and their --tflm).
        proc = run_invoke(name, "--help")
        assert proc.returncode == 0 and proc.stdout.startswith("Usage:"), f"{name}: {proc.stdout[:300]} {proc.stderr}"
        assert "--=" not in proc.stdout, f"{name}: {proc.stdout}"
        options = proc.stdout.split("Options:", 1)[1].splitlines() if "Options:" in proc.stdout else []
        for line in options:
            match = OPTION.match(line)
            if not match:
                continue
            short, long_name, text = match.groups()
            assert long_name, f"{name}: an option without a name: {line!r}"
            assert text, f"{name}: --{long_name} has no help text"
            if short:
                assert short != "h", f"{name}: -h is --{long_name}, not --help"
                shorts.setdefault(short, set()).add(long_name)
    for short, names in shorts.items():
        assert len(names) == 1, f"-{short} means {sorted(names)} in different tasks"
    assert shorts == {"b": {"board"}, "m": {"model"}}


def test_hil_dash_h_is_help():
    proc = run_invoke("hil", "-h")
    assert proc.returncode == 0, proc.stderr
    assert "--no-flash" in proc.stdout or "--port" in proc.stdout


def test_measure_seed_help_speaks_of_measuring():
    proc = run_invoke("--help", "measure")
    text = " ".join(proc.stdout.split())
    seed = text.split("--seed=STRING", 1)[1][:200]
    assert "test inputs" in seed and "trains nothing" in seed and "initialisation" not in seed


# -- item 6: a build folder that cannot be written ------------------------------------------------------------
@pytest.mark.parametrize("task", ["train", "build", "generate", "profile", "explore", "hil", "bench"])
def test_build_dir_under_a_regular_file_is_one_line(tmp_path, task):
    """--build-dir=<a file>/x: NotADirectoryError as root too (chmod would not stop root)."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    line = assert_clean_error(run_invoke(task, f"--build-dir={afile}/x"), str(afile / "x"), "Not a directory")
    assert "--build-dir" in line


def test_measure_out_under_a_regular_file_is_refused_before_the_device(esp32_build, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    proc = run_invoke("measure", "--port=/dev/null", f"--build-dir={esp32_build['build_dir']}", f"--out={afile}/m",
                      f"--db={tmp_path / 'h.sqlite'}")
    assert_clean_error(proc, f"--out={afile / 'm'}", "is a file, not a folder")
    assert not (tmp_path / "h.sqlite").exists()


def _private_mounts() -> bool:
    """A private mount namespace (unshare -m, needs root or CAP_SYS_ADMIN): a real read-only or full file system
    for one command, gone when it exits."""
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True).returncode == 0


needs_mounts = pytest.mark.skipif(not _private_mounts(), reason="needs `unshare -m` and mount (root): a real "
                                                                 "read-only / full file system")


def _invoke_under(mount: str, *args: str) -> subprocess.CompletedProcess:
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "invoke", *args])
    return subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && exec {cmd}"], cwd=REPO, capture_output=True,
                          text=True, timeout=900)


@needs_mounts
def test_read_only_build_folder_keeps_the_last_report(esp32_build, tmp_path):
    """The build folder remounted read-only (a bind mount in a private namespace): a rebuild that must write the
    report fails in one line naming it, and the last good report is untouched, no temporary file left."""
    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir, symlinks=True)
    report = build_dir / "esp32" / "digits" / "report.json"
    before = report.read_bytes()
    proc = _invoke_under(f"mount --bind {build_dir} {build_dir} && mount -o remount,ro,bind {build_dir}",
                         "build", "--board=esp32", "--max-drop=3", f"--build-dir={build_dir}")
    line = assert_clean_error(proc, "Read-only file system", str(build_dir))
    assert ".tmp" not in line
    assert report.read_bytes() == before
    assert not list(build_dir.rglob("*.tmp*"))


@needs_mounts
def test_full_disk_is_one_line_and_leaves_no_half_written_model(tmp_path):
    """A 16 KiB tmpfs: the trained model does not fit (HDF5 writing straight to it crashed the process)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = _invoke_under(f"mount -t tmpfs -o size=16k tmpfs {disk}", "train", "--epochs=1",
                         f"--build-dir={disk}/b")
    assert_clean_error(proc, "No space left on device", f"{disk}/b/", "float.h5")
    assert proc.returncode == 1


# -- item 7: Ctrl-C ------------------------------------------------------------------------------------------
def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, pattern: str, limit: float = 300) -> str:
    """Read stdout lines until one matches; what was read."""
    seen = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
    proc.kill()
    raise AssertionError(f"no {pattern!r} in: {''.join(seen)} {proc.stderr.read()}")


def test_ctrl_c_during_a_build_says_what_was_kept(tmp_path):
    proc = _start("build", "--board=esp32", f"--build-dir={tmp_path}")
    _wait_for(proc, r"\[1/8\] train \.\.\.")
    time.sleep(4)  # inside the training stage (TensorFlow loading or training)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1, err
    assert "stage train" in lines[0] and "report.json was not written" in lines[0]
    assert not list(tmp_path.rglob("report.json")) and not list(tmp_path.rglob("*.tmp*"))
    assert not list(tmp_path.rglob("stages/train.json"))


def test_ctrl_c_during_measure_says_how_many_runs_were_kept(esp32_build, tmp_path):
    emulator = _start("emulate", "--board=esp32", f"--build-dir={esp32_build['build_dir']}")
    try:
        port = re.search(r"on (/dev/\S+)", _wait_for(emulator, r"^EMULATED")).group(1)
        out, db = tmp_path / "m", tmp_path / "h.sqlite"
        proc = _start("measure", "--board=esp32", f"--port={port}", f"--build-dir={esp32_build['build_dir']}",
                      "--runs=100000", "--warmup=0", "--inputs=0", f"--out={out}", f"--db={db}")
        _wait_for(proc, r"^run 3/100000")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    line = [l for l in err.splitlines() if l.startswith("interrupted:")]
    assert len(line) == 1, err
    kept = [json.loads(l) for l in (out / "runs.jsonl").read_text().splitlines()]
    runs = sum(1 for r in kept if r["kind"] == "latency")
    assert runs >= 3
    assert f"holds those {runs} runs" in line[0] and "results.json was not written" in line[0]
    assert not (out / "results.json").exists() and not db.exists()


def test_measure_checks_the_baseline_before_opening_the_device(esp32_build, tmp_path):
    db = tmp_path / "h.sqlite"
    proc = run_invoke("measure", "--port=/dev/null", f"--build-dir={esp32_build['build_dir']}",
                      f"--out={tmp_path / 'm'}", f"--db={db}", f"--baseline={tmp_path / 'missing.json'}")
    assert_clean_error(proc, "--baseline=", "missing.json", "No such file")
    assert not db.exists() and not (tmp_path / "m").exists()


# -- item 8: concurrent builds into one folder ---------------------------------------------------------------
def test_concurrent_trains_into_one_folder_train_once(tmp_path):
    procs = [_start("train", "--epochs=2", f"--build-dir={tmp_path}") for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    done = [out for out, _ in outs if re.search(r"\[1/8\] train: done in", out)]
    reused = [out for out, _ in outs if "[1/8] train: up to date" in out]
    assert len(done) == 1 and len(reused) == 2, [o for o, _ in outs]
    assert any("waiting for another build of this stage" in out for out in reused)
    results = {json.dumps(json.loads(out[out.index("{"):]), sort_keys=True) for out, _ in outs}
    assert len(results) == 1  # all three print the one training's result


# -- item 12: explore's limits are checked before anything is written ---------------------------------------------
@pytest.mark.parametrize("args, fragment", [
    (["--min-accuracy=150"], "--min-accuracy"), (["--min-accuracy=-5"], "--min-accuracy"),
    (["--max-ram-kb=0"], "--max-ram-kb"), (["--max-latency-ms=nan"], "--max-latency-ms"),
    (["--max-flash-kb=-1"], "--max-flash-kb"), (["--trials=0"], "--trials"), (["--epochs=0"], "--epochs"),
    (["--model=sine", "--min-accuracy=90"], "regression"), (["--model=ds_cnn"], "--data"),
    (["--data=nowhere.npz"], "nowhere.npz"), (["--storage=study.db"], "--storage"),
])
def test_refused_explore_leaves_the_last_report_as_it_was(tmp_path, args, fragment):
    model = next((a.split("=", 1)[1] for a in args if a.startswith("--model=")), "digits")
    out = tmp_path / "esp32" / model / "explore"
    out.mkdir(parents=True)
    for name in ("report.html", "pareto.json"):
        (out / name).write_text(f"the last good {name}")
    assert_clean_error(run_invoke("explore", "--board=esp32", *args, f"--build-dir={tmp_path}"), fragment)
    assert sorted(p.name for p in out.iterdir()) == ["pareto.json", "report.html"]
    assert (out / "pareto.json").read_text() == "the last good pareto.json"


# -- item 13: options that do not apply are refused -----------------------------------------------------------
@pytest.mark.parametrize("task, args, fragment", [
    ("build", ["--tflite=x.tflite", "--model=ds_cnn", "--prune=structured", "--width=0.5"],
     "--model, --width, --prune do not apply to a model brought with --tflite"),
    ("generate", ["--tflite=x.tflite", "--no-qat"], "--no-qat does not apply"),
    ("profile", ["--tflite=x.tflite", "--epochs=3"], "--epochs does not apply"),
    ("hil", ["--tflite=x.tflite", "--sparsity=0.2"], "--sparsity does not apply"),
    ("build", ["--from-explore=best", "--depth=2"], "--depth does not apply with --from-explore"),
    ("hil", ["--rig=rig.toml", "--board=nano33ble", "--runs=3"], "--board, --runs do not apply with --rig"),
    ("build", ["--prune=structured", "--sparsity=0"], "--sparsity=0 removes none"),
])
def test_options_that_do_not_apply_are_refused(tmp_path, task, args, fragment):
    assert_clean_error(run_invoke(task, *args, f"--build-dir={tmp_path}"), fragment)
    assert not list(tmp_path.iterdir())


def test_measure_of_a_brought_model_without_data_says_it_checks_one_input(esp32_build, tmp_path):
    from pipeline import boards
    from pipeline.hil.emulate import Serving, device_for_build

    brought = tmp_path / "kws.tflite"
    shutil.copy(esp32_build["dir"] / "model.tflite", brought)
    build_dir = tmp_path / "b"
    assert run_invoke("generate", f"--tflite={brought}", f"--build-dir={build_dir}").returncode == 0
    with Serving(device_for_build(build_dir, boards.load_board("esp32"), "kws")) as port:
        proc = run_invoke("measure", "--model=kws", f"--port={port}", f"--build-dir={build_dir}", "--runs=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "checking one input, not --inputs=20" in proc.stdout and "pass --data" in proc.stdout


# -- item 15: hil against what already runs on the port -------------------------------------------------------
def test_hil_no_flash_measures_the_emulator_and_says_when_a_rebuild_replaced_its_build(esp32_build, tmp_path):
    build_dir = tmp_path / "b"
    shutil.copytree(esp32_build["build_dir"], build_dir, symlinks=True)
    emulator = _start("emulate", "--board=esp32", f"--build-dir={build_dir}")
    try:
        port = re.search(r"on (/dev/\S+)", _wait_for(emulator, r"^EMULATED")).group(1)
        same = run_invoke("hil", "--no-flash", f"--port={port}", f"--build-dir={build_dir}", "--runs=2",
                          "--inputs=2", f"--db={tmp_path / 'h.sqlite'}")
        assert same.returncode == 0, same.stderr[-2000:]
        assert "[emulated] latency (emulated)" in same.stdout and "replaced" not in same.stdout
        other = run_invoke("hil", "--no-flash", f"--port={port}", f"--build-dir={build_dir}", "--runs=2",
                           "--width=0.5", "--epochs=2", f"--db={tmp_path / 'h.sqlite'}")
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.communicate(timeout=30)
    assert "note: this build replaced the model in" in other.stdout
    line = assert_clean_error(other, "runs model hash", "restart the emulator on the current build (invoke emulate")
    assert "invoke flash" not in line


def test_hil_without_no_flash_needs_compiled_firmware_and_names_the_way_out(esp32_build):
    proc = run_invoke("hil", "--board=esp32", "--port=/dev/null", f"--build-dir={esp32_build['build_dir']}")
    assert_clean_error(proc, "hil needs compiled firmware", "--no-flash")


def test_hil_checks_the_baseline_before_building(tmp_path):
    proc = run_invoke("hil", "--no-flash", "--port=/dev/null", f"--baseline={tmp_path / 'missing.json'}",
                      f"--build-dir={tmp_path / 'b'}")
    assert_clean_error(proc, "missing.json")
    assert not (tmp_path / "b").exists()


# -- item 16: user-facing text holds on the user's machine -----------------------------------------------------
WORKSHOP = re.compile(r"\bhere\b|issues' closing notes|closing note|this session|this machine|this workshop|"
                      r"no Xtensa compiler exists", re.IGNORECASE)


def test_user_facing_text_does_not_speak_of_the_machine_it_was_written_on(esp32_build):
    """README, board files, every task's help, a build's summary and its generated and rendered files."""
    texts = {"README.md": (REPO / "README.md").read_text()}
    texts.update({str(p.relative_to(REPO)): p.read_text() for p in sorted((REPO / "boards").rglob("*.toml"))})
    texts.update({f"invoke --help {name}": run_invoke("--help", name).stdout for name in _task_names()})
    texts["invoke build (summary)"] = esp32_build["proc"].stdout
    for path in esp32_build["dir"].rglob("*"):
        if path.is_file() and path.suffix in (".h", ".cc", ".c", ".txt", ".yml", ".csv", ".md", ".json", ".defaults"):
            texts[str(path.relative_to(esp32_build["dir"]))] = path.read_text(errors="replace")
    # In C sources "here" is a place in the code ("counts from here"): there only the workshop's own phrases.
    code = re.compile(WORKSHOP.pattern.replace(r"\bhere\b|", ""), re.IGNORECASE)
    found = [f"{name}: {line.strip()}" for name, text in texts.items() for line in text.splitlines()
             if (code if name.endswith((".h", ".cc", ".c")) else WORKSHOP).search(
                 line.replace("[other tasks here ...]", ""))]  # invoke's own usage line
    assert not found, "\n".join(found)
