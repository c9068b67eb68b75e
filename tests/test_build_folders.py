"""Build folders a user can trust: each says what it holds (holds.json), variants sit side by side (--name), no
firmware of another model is left beside a report, commands without --model find the build, clean removes only
what it is asked to, the run history compares one model with itself, and refused inputs leave no folders."""
import hashlib
import json
import shutil

import numpy as np
import pytest

from conftest import assert_clean_error, run_invoke
from pipeline import boards
from pipeline.hil import history
from pipeline.hil.emulate import Serving, device_for_build

EMPTY_HASH = hashlib.sha256(b"").hexdigest()[:16]


@pytest.fixture(scope="module")
def dense_tflite(tmp_path_factory):
    """A small real full-int8 model (16 inputs, 4 outputs) that is not the zoo's digits CNN, saved as
    digits.tflite: a brought model with a zoo model's name."""
    from pipeline.model import tfenv

    k, tf = tfenv.keras(), tfenv.tf()
    model = k.Sequential([k.layers.Input((16,)), k.layers.Dense(8, activation="relu"), k.layers.Dense(4)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.random((1, 16)).astype("float32")] for _ in range(20))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("brought") / "digits.tflite"
    path.write_bytes(converter.convert())
    return path


def _copy(esp32_build, dest):
    """A private copy of the session's esp32 build (stage cache included), in a folder with a `build` part."""
    shutil.copytree(esp32_build["build_dir"], dest, ignore=shutil.ignore_patterns("hil.sqlite", "measure"))
    return dest


def _notes(proc):
    return [line for line in proc.stdout.splitlines() if line.startswith("note:")]


# -- item 2: no stale firmware, variants side by side, every command names its folder ---------------------------
def test_a_brought_model_with_a_zoo_name_replaces_the_zoo_build_aloud_and_leaves_no_stale_firmware(
        esp32_build, dense_tflite, tmp_path):
    build_dir = _copy(esp32_build, tmp_path / "build")
    folder = build_dir / "esp32" / "digits"
    old_hash = esp32_build["report"]["model_hash"]
    assert (folder / "firmware" / "main" / "digits_model_settings.h").read_text().count(old_hash) == 1

    proc = run_invoke("generate", f"--tflite={dense_tflite}", "--board=esp32", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"build folder: {folder} (digits on esp32)" in proc.stdout
    [note] = _notes(proc)
    assert "held digits (zoo model" in note and f"digits (brought {dense_tflite})" in note and "--name=NAME" in note
    report = json.loads((folder / "report.json").read_text())
    assert report["model_hash"] != old_hash and report["firmware"] is None
    # the zoo model's firmware is gone (and the output says so) rather than left beside another model's report
    assert not (folder / "firmware").exists() and f"firmware: removed {folder / 'firmware'}" in proc.stdout
    holds = json.loads((folder / "holds.json").read_text())
    assert (holds["model"], holds["source"], holds["model_hash"]) == ("digits", "tflite", report["model_hash"])


@pytest.mark.slow
def test_generate_structured_after_build_leaves_no_firmware_of_the_old_model(esp32_build, tmp_path):
    """The issue's own sequence: `invoke build`, then `invoke generate --prune=structured` in the same folder."""
    build_dir = _copy(esp32_build, tmp_path / "build")
    folder = build_dir / "esp32" / "digits"
    proc = run_invoke("generate", "--board=esp32", "--prune=structured", "--epochs=4", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    [note] = _notes(proc)
    assert "prune=magnitude" in note and "prune=structured" in note and "--name=NAME" in note
    report = json.loads((folder / "report.json").read_text())
    assert report["firmware"] is None and not (folder / "firmware").exists()
    assert report["model_hash"] in (folder / "generated" / "model_settings.h").read_text()
    proc = run_invoke("build", "--board=esp32", "--prune=structured", "--epochs=4", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert report["model_hash"] in (folder / "firmware" / "main" / "digits_model_settings.h").read_text()


def test_a_rerendered_project_that_is_not_compiled_keeps_no_old_image(esp32_build, dense_tflite, tmp_path):
    """The compiled output survives a re-render (for incremental builds); not compiled again, it is the old model's
    image, which `invoke flash` would flash."""
    build_dir = _copy(esp32_build, tmp_path / "build")
    image = build_dir / "esp32" / "digits" / "firmware" / "build" / "flasher_args.json"
    image.parent.mkdir()
    image.write_text("{}")  # what idf.py build leaves (the flasher reads it)
    proc = run_invoke("build", f"--tflite={dense_tflite}", "--board=esp32", "--no-compile", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not image.parent.exists() and f"removed {image.parent}" in proc.stdout
    assert (image.parent.parent / "main" / "digits_model_settings.h").is_file()  # the project itself, for this model


def test_variants_side_by_side_and_commands_find_the_build(esp32_build, dense_tflite, tmp_path):
    build_dir = _copy(esp32_build, tmp_path / "build")
    zoo = build_dir / "esp32" / "digits"
    proc = run_invoke("generate", "--board=esp32", f"--build-dir={build_dir}")  # the same model again
    assert proc.returncode == 0 and not _notes(proc), proc.stderr[-2000:]
    firmware = json.loads((zoo / "report.json").read_text())["firmware"]
    assert firmware["project_dir"] == str(zoo / "firmware") and (zoo / "firmware").is_dir()  # its own: kept
    good = (zoo / "report.json").read_text()
    proc = run_invoke("generate", f"--tflite={dense_tflite}", "--board=esp32", "--name=mine",
                      f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"build folder: {build_dir / 'esp32' / 'mine'}" in proc.stdout and not _notes(proc)
    assert (zoo / "report.json").read_text() == good and (zoo / "firmware").is_dir()  # untouched

    # without --model/--name: the most recent build, with the others listed and the option to pick one
    proc = run_invoke("measure", "--board=esp32", "--port=/dev/nonexistent-port", f"--build-dir={build_dir}")
    assert_clean_error(proc, "/dev/nonexistent-port")
    [note] = _notes(proc)
    assert "2 builds for esp32" in note and "mine (digits)" in note and "--name=NAME" in note
    assert f"build folder: {build_dir / 'esp32' / 'mine'} (digits on esp32)" in proc.stdout
    proc = run_invoke("measure", "--board=esp32", "--name=digits", "--port=/dev/nonexistent-port",
                      f"--build-dir={build_dir}")
    assert f"build folder: {zoo} (digits on esp32)" in proc.stdout
    assert not (zoo / "measure").exists()  # a refused port leaves no results folder
    assert_clean_error(run_invoke("measure", "--board=esp32", "--name=other", f"--build-dir={build_dir}"),
                       "no build named other", "mine", "--name")
    assert_clean_error(run_invoke("measure", "--board=esp32", "--name=../esp32", f"--build-dir={build_dir}"),
                       "must be a name")


def test_after_generate_of_a_brought_model_the_next_commands_act_on_it(dense_tflite, tmp_path):
    """The README's next commands after `invoke generate --tflite=M.tflite --board=B`, without --model."""
    kws = tmp_path / "kws.tflite"
    shutil.copy(dense_tflite, kws)
    build_dir = tmp_path / "build"
    proc = run_invoke("generate", f"--tflite={kws}", "--board=nucleo-l4r5zi", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = build_dir / "nucleo-l4r5zi" / "kws"
    no_tflm = tmp_path / "no-tflm"
    for task in ("firmware-qemu", "firmware-host"):
        proc = run_invoke(task, f"--tflm={no_tflm}", "--board=nucleo-l4r5zi", f"--build-dir={build_dir}")
        line = assert_clean_error(proc, str(no_tflm))
        assert "holds no generated model" not in line
        assert f"build folder: {folder} (kws on nucleo-l4r5zi)" in proc.stdout
    proc = run_invoke("measure", "--board=nucleo-l4r5zi", "--port=/dev/nonexistent-port", f"--build-dir={build_dir}")
    assert_clean_error(proc, "/dev/nonexistent-port")
    assert f"build folder: {folder}" in proc.stdout and not _notes(proc)
    assert_clean_error(run_invoke("measure", "--board=esp32", "--port=/dev/null", f"--build-dir={build_dir}"),
                       "no build for esp32", "invoke build --board=esp32")


# -- item 1: clean -------------------------------------------------------------------------------------------
@pytest.fixture
def cluttered(esp32_build, tmp_path):
    """A build folder as a user's looks after a while: two boards, a named variant of another model, an explore
    study, the run history, the stage cache, and a symlink to a folder outside it."""
    root = tmp_path / "work" / "build"
    root.mkdir(parents=True)
    (tmp_path / "work" / "precious.txt").write_text("the user's own file")
    source = esp32_build["dir"]
    shutil.copytree(source, root / "esp32" / "digits", ignore=shutil.ignore_patterns("measure"))
    shutil.copytree(source, root / "nano33ble" / "digits", ignore=shutil.ignore_patterns("measure"))
    other = root / "esp32" / "small"
    shutil.copytree(source, other, ignore=shutil.ignore_patterns("measure"))
    (other / "holds.json").unlink(missing_ok=True)  # a folder from before manifests: its report says what it holds
    report = json.loads((other / "report.json").read_text())
    (other / "report.json").write_text(json.dumps({**report, "model": "kws"}))
    shutil.copytree(esp32_build["build_dir"] / "_models" / "digits", root / "_models" / "digits")
    (root / "esp32" / "digits" / "explore").mkdir()
    (root / "esp32" / "digits" / "explore" / "study.sqlite3").write_text("an explore study")
    history.connect(root / "hil.sqlite").close()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not a build output")
    (root / "esp32" / "link").symlink_to(outside)
    return root


def test_clean_refuses_paths_and_the_build_dir_short_flag(cluttered):
    work = cluttered.parent
    for option in ("--board=..", "--model=../esp32", "--name=a/b", "--board=_models"):
        proc = run_invoke("clean", f"--build-dir={cluttered}", option)
        assert_clean_error(proc, option.split("=")[0])
    proc = run_invoke("clean", "-b", str(cluttered))  # -b is --board elsewhere: not the build folder in clean
    assert proc.returncode != 0
    (work / ".git").mkdir()
    assert_clean_error(run_invoke("clean", f"--build-dir={work}"), "source checkout")
    assert (work / "precious.txt").is_file() and (cluttered / "esp32" / "digits" / "report.json").is_file()


def test_clean_model_alone_cleans_it_on_every_board_and_keeps_history_and_studies(cluttered):
    proc = run_invoke("clean", f"--build-dir={cluttered}", "--model=digits")
    assert proc.returncode == 0, proc.stderr
    assert f"removing {cluttered / 'nano33ble' / 'digits'}" in proc.stdout
    assert f"removing {cluttered / '_models' / 'digits'}" in proc.stdout
    assert f"kept {cluttered / 'esp32' / 'digits' / 'explore'} (--explore removes it)" in proc.stdout
    assert not (cluttered / "nano33ble" / "digits").exists() and not (cluttered / "_models" / "digits").exists()
    assert [p.name for p in (cluttered / "esp32" / "digits").iterdir()] == ["explore"]
    assert (cluttered / "esp32" / "small" / "report.json").is_file()  # another model's variant
    assert (cluttered / "hil.sqlite").is_file()

    proc = run_invoke("clean", f"--build-dir={cluttered}", "--board=esp32")
    assert proc.returncode == 0, proc.stderr
    assert not (cluttered / "esp32" / "small").exists() and not (cluttered / "esp32" / "link").exists()
    assert (cluttered.parent.parent / "outside" / "keep.txt").is_file()  # the link went, not what it points to
    assert (cluttered / "esp32" / "digits" / "explore" / "study.sqlite3").is_file()

    proc = run_invoke("clean", f"--build-dir={cluttered}", "--dry-run", "--history", "--explore")
    assert f"would remove {cluttered / 'hil.sqlite'}" in proc.stdout and (cluttered / "hil.sqlite").is_file()
    proc = run_invoke("clean", f"--build-dir={cluttered}")
    assert proc.returncode == 0, proc.stderr
    assert f"kept {cluttered / 'hil.sqlite'} (--history removes it)" in proc.stdout
    assert sorted(str(p.relative_to(cluttered)) for p in cluttered.rglob("*") if p.is_file()) == [
        "esp32/digits/explore/study.sqlite3", "hil.sqlite"]
    proc = run_invoke("clean", f"--build-dir={cluttered}", "--history", "--explore")
    assert proc.returncode == 0 and not list(cluttered.iterdir())
    assert (cluttered.parent / "precious.txt").is_file()


# -- items 3 and 4: the run history ---------------------------------------------------------------------------
def _measure(build_dir, port, *args):
    proc = run_invoke("measure", "--board=esp32", f"--port={port}", f"--build-dir={build_dir}", "--runs=2",
                      "--warmup=0", "--inputs=1", *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_history_hashes_the_firmware_and_compares_a_model_only_with_itself(esp32_build, dense_tflite, tmp_path):
    build_dir = _copy(esp32_build, tmp_path / "build")  # the default layout: a `build` part in every path
    board = boards.load_board("esp32")
    proc = run_invoke("generate", f"--tflite={dense_tflite}", "--board=esp32", "--name=mine",
                      f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    mine, zoo = build_dir / "esp32" / "mine", build_dir / "esp32" / "digits"
    # first the brought model named digits (fast), then the zoo digits CNN (about 11 ms estimated: far slower)
    with Serving(device_for_build(build_dir, board, "digits", mine)) as port:
        _measure(build_dir, port, "--name=mine")
    with Serving(device_for_build(build_dir, board, "digits", zoo)) as port:
        proc = _measure(build_dir, port, "--name=digits", "--baseline=history:3", "--max-regression=10")
    [note] = [line for line in _notes(proc) if "baseline" in line]
    first, second = history.recent(build_dir / "hil.sqlite")[::-1]
    assert first["model"] == second["model"] == "digits" and first["model_hash"] != second["model_hash"]
    assert first["model_hash"] in note and "another model" in note and "nothing to compare" in note
    assert second["latency_median_us"] > 10 * first["latency_median_us"]  # compared, this would have failed

    # item 3: the firmware hash is the project's sources, not the hash of nothing
    assert second["firmware_hash"] == history.firmware_hash(zoo / "firmware") != EMPTY_HASH
    assert first["firmware_hash"] is None  # generate renders no firmware project
    before = history.firmware_hash(zoo / "firmware")
    (zoo / "firmware" / "build").mkdir()
    (zoo / "firmware" / "build" / "app.bin").write_bytes(b"compiled")  # the project's build output: not hashed
    assert history.firmware_hash(zoo / "firmware") == before
    (zoo / "firmware" / "main" / "main.cc").write_text("// changed\n", encoding="utf-8")
    assert history.firmware_hash(zoo / "firmware") != before

    # history.png: one line per model hash, never two models drawn as one
    lines = history.series(history.recent(build_dir / "hil.sqlite"))
    assert sorted(key[2] for key in lines) == sorted([first["model_hash"], second["model_hash"]])


# -- item 5: refused inputs leave no folders ------------------------------------------------------------------
@pytest.mark.parametrize("task, option", [
    ("build", "--data={tmp}/nosuch.npz"), ("train", "--data={tmp}/wrong.npz"), ("build", "--data={tmp}/wrong.npz"),
    ("generate", "--tflite={tmp}/bad.tflite"), ("generate", "--tflite={tmp}/nope.tflite"),
])
def test_refused_inputs_leave_no_folders(tmp_path, task, option):
    np.savez(tmp_path / "wrong.npz", x_train=np.zeros((20, 28, 28)), y_train=np.zeros(20, int),
             x_test=np.zeros((5, 28, 28)), y_test=np.zeros(5, int))
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer at all")
    build_dir = tmp_path / "build"
    assert_clean_error(run_invoke(task, option.format(tmp=tmp_path), f"--build-dir={build_dir}"), str(tmp_path))
    assert not build_dir.exists(), sorted(str(p) for p in build_dir.rglob("*"))
