"""Sound in, keyword out: WAV folders and int16 audio through TFLM's microfrontend (pymicro-features), the
same front end in the emulated device's harness core, bit for bit."""
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from conftest import assert_clean_error, run_invoke
from pipeline.errors import PipelineError
from pipeline.model import audio, datasets
from pipeline.target import frontend
from spoken_words import make_words, tools_missing


def _tone(freq: float, rate: int = 16000, seconds: float = 0.6, seed: int = 0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.05, t.size)
    return (0.5 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float64)


def _tone_folder(root, classes=("low", "high"), per_class=4):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            wavfile.write(root / name / f"{i}.wav", 16000,
                          (_tone(300 + 2000 * c + 37 * i, seed=i) * 20000).astype(np.int16))
    return root


def test_wav_of_any_common_rate_width_and_channels_becomes_16k_mono(tmp_path):
    clip = _tone(700, rate=44100)
    stereo = np.stack([clip, clip], axis=1)
    wavfile.write(tmp_path / "s.wav", 44100, (stereo * (2 ** 31 - 1)).astype(np.int32))
    wavfile.write(tmp_path / "m.wav", 16000, (_tone(700) * 32767).astype(np.int16))
    pcm, done = audio.read_wav(tmp_path / "s.wav")
    assert pcm.dtype == np.int16 and abs(len(pcm) - 0.6 * 16000) <= 1
    assert done == ["int32 samples", "2 channels mixed down", "44100 Hz resampled"]
    ref, done_ref = audio.read_wav(tmp_path / "m.wav")
    assert done_ref == []
    # the same tone either way: nearly the same level after mix-down and resampling
    assert abs(np.std(pcm.astype(float)) - np.std(ref.astype(float))) / np.std(ref.astype(float)) < 0.05


def test_front_end_features_and_pooling():
    clip = (np.random.default_rng(1).normal(0, 3000, 16000)).astype(np.int16)
    raw = frontend.raw_frames(clip)
    assert raw.shape == (98, 40) and raw.dtype == np.uint16 and raw.max() > 0  # 30 ms windows every 10 ms
    pooled = frontend.features(clip)
    assert pooled.shape == (49, 10)
    kept = raw[::2][:49].astype(np.uint32)
    assert np.array_equal(pooled, (kept.reshape(49, 10, 4).sum(axis=2) + 2) // 4)
    with pytest.raises(PipelineError, match="16000 samples"):
        frontend.features(clip[:8000])


def _crosscheck_clip(seed: int) -> np.ndarray:
    """The clip tests/data/frontend_crosscheck.json's TFLM figures were made from (its "clip" text)."""
    rng = np.random.default_rng(seed)
    t = np.arange(16000)
    x = rng.normal(0, 3000, 16000) * (0.2 + np.abs(np.sin(t / 1500))) + 4000 * np.sin(2 * np.pi * 440 * t / 16000)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def test_front_end_at_any_settings_gives_tflm_microfrontends_frames_bit_for_bit():
    """The host front end against TFLM's own microfrontend sources compiled on this host (kept figures: sha256 of
    the frames), at the default and six other settings; TensorFlow's op is recorded as not bit-identical."""
    kept = json.loads((Path(__file__).parent / "data" / "frontend_crosscheck.json").read_text())
    assert "tflite-micro" in kept["source"] and len(kept["cases"]) >= 10
    for case in kept["cases"]:
        settings = frontend.parse(case["settings"])
        frames = frontend.raw_frames(_crosscheck_clip(case["seed"]), settings)
        assert list(frames.shape) == case["frames"], case
        assert hashlib.sha256(frames.astype("<u2").tobytes()).hexdigest() == case["sha256"], case
    assert kept["tensorflow_op"]["differing_values"] > 0


def test_front_end_settings_keep_the_models_grid_and_change_the_features_and_the_key(tmp_path):
    s = frontend.parse("stride_ms=20,mel_channels=20,pcan=off")
    assert (s.frame_step, s.channel_group, s.feature_shape) == (1, 2, (49, 10)) and not s.pcan
    assert s.describe() == "stride_ms=20,mel_channels=20,pcan=off" and frontend.parse(s.describe()) == s
    assert frontend.FrontEndSettings.from_dict(s.as_dict()) == s
    clip = (np.random.default_rng(3).normal(0, 3000, 16000)).astype(np.int16)
    raw = frontend.raw_frames(clip, s)
    assert raw.shape == (49, 20)  # one frame every 20 ms
    pooled = frontend.features(clip, s)
    assert pooled.shape == (49, 10) and np.array_equal(pooled, (raw[:49].astype(np.uint32).reshape(49, 10, 2).sum(2) + 1) // 2)
    assert not np.array_equal(pooled, frontend.features(clip))
    # half the frames: about half the estimated work
    assert frontend.estimated_cycles(s)["frames"] == 49 and frontend.estimated_cycles()["frames"] == 98
    root = _tone_folder(tmp_path / "words")
    assert datasets.fingerprint(str(root), 0, s) != datasets.fingerprint(str(root), 0)
    assert datasets.fingerprint(str(root), 0, frontend.SETTINGS) == datasets.fingerprint(str(root), 0)
    for bad, cause in (("stride_ms=7", "must divide"), ("mel_channels=45", "multiple of the model's 10"),
                       ("hop=3", "KEY one of"), ("pcan=maybe", "on or off"), ("upper_band_hz=9000", "8000 Hz"),
                       ("window_ms=5", "from stride_ms")):
        with pytest.raises(PipelineError, match=cause):
            frontend.parse(bad)


def test_a_zoo_keyword_model_has_as_many_outputs_as_the_data_has_classes(tmp_path):
    root = _tone_folder(tmp_path / "words", per_class=7)
    data = datasets.load(str(root), (49, 10, 1), 12, seed=0, classes_from_data=True, log=lambda _m: None)
    assert data.labels == ["high", "low"]  # not padded to the benchmark's 12
    brought = datasets.load(str(root), (49, 10, 1), 12, seed=0, log=lambda _m: None)  # a model file's fixed outputs
    assert len(brought.labels) == 12
    clips = np.stack([(_tone(300 + 400 * (i % 3), seconds=1.0, seed=i) * 20000).astype(np.int16) for i in range(12)])
    np.savez(tmp_path / "a.npz", x_train=clips[:9], y_train=np.arange(9) % 3, x_test=clips[9:], y_test=np.arange(3),
             labels=np.array(["a", "b", "c"]))
    data = datasets.load(str(tmp_path / "a.npz"), (49, 10, 1), 12, seed=0, classes_from_data=True, log=lambda _m: None)
    assert data.labels == ["a", "b", "c"]
    one = tmp_path / "one"
    _tone_folder(one, classes=("only",))
    with pytest.raises(PipelineError, match="1 class"):
        datasets.load(str(one), (49, 10, 1), 12, seed=0, classes_from_data=True, log=lambda _m: None)


def test_front_end_settings_bad_or_misplaced_on_the_command_line(tmp_path):
    root = _tone_folder(tmp_path / "words")
    proc = run_invoke("train", "--model=ds_cnn", f"--data={root}", "--frontend=stride_ms=15",
                      f"--build-dir={tmp_path / 'build'}")
    assert_clean_error(proc, "--frontend stride_ms=15", "must divide")
    proc = run_invoke("train", "--model=digits", "--frontend=stride_ms=20", f"--build-dir={tmp_path / 'build'}")
    assert_clean_error(proc, "--frontend=stride_ms=20", "for audio data")
    assert not (tmp_path / "build").exists()


def test_background_noise_and_silence_are_seeded(tmp_path):
    root = _tone_folder(tmp_path / "words", per_class=10)
    (root / "_background_noise_").mkdir()
    wavfile.write(root / "_background_noise_" / "n.wav", 16000,
                  (np.random.default_rng(5).normal(0, 0.3, 48000) * 20000).astype(np.int16))
    logs = []
    a = datasets.load(str(root), (49, 10, 1), 12, seed=0, log=logs.append)
    b = datasets.load(str(root), (49, 10, 1), 12, seed=0, log=lambda _m: None)
    c = datasets.load(str(root), (49, 10, 1), 12, seed=1, log=lambda _m: None)
    assert a.labels[:3] == ["high", "low", "_silence_"]
    assert np.array_equal(a.x_train, b.x_train) and not np.array_equal(np.sort(a.x_train.ravel()), np.sort(c.x_train.ravel()))
    assert any("_background_noise_ (1 files) mixed into 80% of clips at 10 dB SNR" in line for line in logs)
    # the front end's settings are part of the dataset's fingerprint, so of every stage's key
    assert audio.fingerprint_extra() and b'"mel_channels": 40' in audio.fingerprint_extra()


def _bad_wav_cases(root):
    ok = _tone_folder(root / "corrupt")
    (ok / "low" / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    empty = _tone_folder(root / "empty")
    wavfile.write(empty / "high" / "empty.wav", 16000, np.zeros(0, np.int16))
    no_audio = _tone_folder(root / "noaudio")
    (no_audio / "mute").mkdir()
    (no_audio / "mute" / "notes.txt").write_text("no audio here")
    rate = _tone_folder(root / "rate")
    wavfile.write(rate / "low" / "phone.wav", 8000, (_tone(300, rate=8000) * 20000).astype(np.int16))
    return [(ok, "bad.wav", "cannot be read as a WAV file"), (empty, "empty.wav", "holds no samples"),
            (no_audio, "mute", "holds no .wav files"), (rate, "phone.wav", "8000 Hz")]


def test_bad_audio_gives_one_line_naming_the_file(tmp_path):
    for folder, name, cause in _bad_wav_cases(tmp_path / "data"):
        proc = run_invoke("train", "--model=ds_cnn", f"--data={folder}", f"--build-dir={tmp_path / 'build'}")
        line = assert_clean_error(proc, name, cause)
        assert str(folder) in line


def test_audio_data_needs_the_keyword_model(tmp_path):
    root = _tone_folder(tmp_path / "words")
    proc = run_invoke("train", "--model=digits", f"--data={root}", f"--build-dir={tmp_path / 'build'}")
    assert_clean_error(proc, "is audio", "--model=ds_cnn")


@pytest.mark.slow
@pytest.mark.skipif(tools_missing() is not None, reason=str(tools_missing()))
def test_keyword_spotter_from_spoken_wavs_and_the_emulated_device_computes_the_same_features(tmp_path):
    from pipeline import boards
    from pipeline.hil.emulate import Serving, device_for_build

    words = make_words(tmp_path / "words")
    build_dir = tmp_path / "build"
    # 39 test clips: one clip is 2.6 accuracy points, so the int8 gate allows a few clips (--max-drop=8)
    proc = run_invoke("build", "--model=ds_cnn", f"--data={words}", "--board=esp32", "--epochs=30", "--max-drop=8",
                      f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "216 files 22050 Hz resampled" in proc.stdout  # espeak-ng's rate, said in one line
    assert "audio front end: pymicro-features" in proc.stdout and "(ESTIMATE," in proc.stdout
    out = build_dir / "esp32" / "ds_cnn"
    report = json.loads((out / "report.json").read_text())
    classes = 6  # 4 words, _unknown_, _silence_: chance is 1/6
    assert report["tflm_metric"] > 100 * 3 / classes, report["tflm_metric"]
    fe = report["audio_frontend"]
    assert fe["library"] == "pymicro-features" and fe["mel_channels"] == 40 and fe["feature_shape"] == [49, 10]
    header = (out / "generated" / "model_settings.h").read_text()
    assert "#define MODEL_HAS_AUDIO_FRONTEND 1" in header and "kFrontendMelChannels = 40;" in header
    assert "kFrontendPcanStrength = 0.95f;" in header
    assert report["frontend_estimate"]["label"] == "estimate" and report["frontend_estimate"]["est_us"] > 0
    assert "AUDIO_FRONTEND (estimate)" in (out / "profile.md").read_text()
    # the device-side hook in the rendered project compiles with -Werror and calls the model library's audio entry,
    # which calls TFLM's microfrontend; TFLM's headers are STAND-INs here (tests/standin: declarations only), so
    # this proves the wiring, not the features
    import subprocess
    from conftest import REPO
    project = out / "firmware" / "main"
    prefix = next(project.glob("*_model_settings.h")).name[:-len("_model_settings.h")]
    for compiler in [c for c in ("g++", "arm-none-eabi-g++") if shutil.which(c)]:
        cpu = ["-mthumb", "-mcpu=cortex-m4"] if compiler.startswith("arm") else []
        for source, wanted in (("tflm_backend.cc", f"{prefix}_audio_frame"), (f"{prefix}.cc", "FrontendProcessSamples")):
            obj = tmp_path / f"{compiler}-{source}.o"
            built = subprocess.run([compiler, "-std=c++17", *cpu, "-Os", "-Wall", "-Wextra", "-Werror",
                                    f"-I{REPO / 'tests/standin/microfrontend'}", f"-I{REPO / 'tests/standin/tflm'}",
                                    f"-I{project}", "-c", str(project / source), "-o", str(obj)],
                                   capture_output=True, text=True)
            assert built.returncode == 0, built.stderr[-3000:]
            symbols = subprocess.run([shutil.which("nm") or "nm", str(obj)], capture_output=True, text=True).stdout
            assert wanted in symbols, source

    board = boards.load_board("esp32")
    device = device_for_build(build_dir, board, "ds_cnn", out)
    device.take()
    assert b"m-x-audio-frontend-1" in device.feed(b"xinfo%")
    device.feed(b"db load 3%")
    device.feed(b"db 010203%")
    assert b"not a whole number of 320-byte strides" in device.feed(b"xaudio%")
    assert b"0 of 49 frames so far" in device.feed(b"xfeatures%")
    with Serving(device) as port:
        proc = run_invoke("measure", "--board=esp32", f"--port={port}", f"--build-dir={build_dir}", f"--data={words}",
                          "--runs=2", "--inputs=8")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if "audio front end (emulated)" in l)
    assert "features of 8 of 8 test clips bit-exact" in line, line
    accuracy = float(re.search(r"keyword accuracy ([0-9.]+)%", line).group(1))
    assert accuracy > 100 / classes
    results = json.loads((out / "measure" / "results.json").read_text())
    assert results["audio"]["source"] == "emulated" and results["audio"]["frontend_us"]["median"] > 0


def test_bench_frontend_measures_the_host_and_labels_each_core_an_estimate():
    proc = run_invoke("bench-frontend", "--seconds=0.3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    host = re.search(r"front end, host \(pymicro-features's microfrontend, default settings, measured wall time\): (\d+) frames/s", proc.stdout)
    assert host and int(host.group(1)) > 100  # real time is 100 frames/s
    default = re.search(r"esp32 +([0-9.]+) ms per 1 s window, +[0-9.]+ us per frame \(ESTIMATE, 240 MHz", proc.stdout)
    assert default
    # other settings: named in the label, and half the frames (a 20 ms stride) cost about half
    proc = run_invoke("bench-frontend", "--seconds=0.3", "--frontend=stride_ms=20,window_ms=30")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stride_ms=20" in proc.stdout
    strided = re.search(r"esp32 +([0-9.]+) ms per 1 s window", proc.stdout)
    assert 0.3 < float(strided.group(1)) / float(default.group(1)) < 0.7
    assert_clean_error(run_invoke("bench-frontend", "--frontend=mel_channels=x"), "--frontend")


def test_front_end_estimate_is_anchored_to_the_kept_qemu_instruction_count():
    kept = json.loads((Path(__file__).parent / "data" / "frontend_crosscheck.json").read_text())["qemu_harness_measure"]
    per_frame = kept["frontend_instructions_per_second_of_audio"]["median"] / kept["frames_per_second_of_audio"]
    assert abs(frontend.MEASURED_INSTRUCTIONS_PER_FRAME - per_frame) / per_frame < 0.01
    assert kept["features_bit_exact"] == kept["audio_clips"] > 0
    assert frontend.estimated_cycles()["ops"] == frontend.MEASURED_INSTRUCTIONS_PER_FRAME * 98
