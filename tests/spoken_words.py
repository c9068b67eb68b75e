"""Spoken keywords made for the tests: Debian's espeak-ng says each word in several voices, speeds and pitches,
and sox adds gain and speed changes. It demonstrates the chain; it is no substitute for real recordings."""
from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np

KEYWORDS = ("yes", "no", "up", "down", "left", "right")
UNKNOWN = ("go", "stop", "house", "tree", "bird", "seven")
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp")
SPEEDS = (110, 140, 170)
PITCHES = (25, 50, 75)


def tools_missing() -> str | None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    return f"needs {' and '.join(missing)} (apt-get install espeak-ng sox)" if missing else None


def _say(text: str, out: Path, voice: str, speed: int, pitch: int, tempo: float, gain_db: float) -> None:
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text],
                   check=True, capture_output=True)
    # espeak-ng writes 22050 Hz mono; keep it at that rate so the loader's resampling is exercised.
    subprocess.run(["sox", str(raw), str(out), "tempo", str(tempo), "gain", str(gain_db)], check=True, capture_output=True)
    raw.unlink()


def make_words(folder: Path, words=KEYWORDS[:4], unknown=UNKNOWN[:4], noise: bool = True, seed: int = 0) -> Path:
    """folder/<word>/*.wav for each word, folder/_unknown_/*.wav for other words, folder/_background_noise_/."""
    rng = np.random.default_rng(seed)
    combos = list(itertools.product(VOICES, SPEEDS, PITCHES))
    for word in words:
        (folder / word).mkdir(parents=True, exist_ok=True)
        for i, (voice, speed, pitch) in enumerate(combos):
            _say(word, folder / word / f"{i:02d}.wav", voice, speed, pitch, rng.uniform(0.9, 1.1), rng.uniform(-6, 0))
    (folder / "_unknown_").mkdir(parents=True, exist_ok=True)
    for j, word in enumerate(unknown):
        for i, (voice, speed, pitch) in enumerate(combos[j::len(unknown)] * 2):
            _say(word, folder / "_unknown_" / f"{word}{i:02d}.wav", voice, speed, pitch, rng.uniform(0.9, 1.1), 0)
    if noise:
        (folder / "_background_noise_").mkdir(parents=True, exist_ok=True)
        for kind in ("whitenoise", "pinknoise", "brownnoise"):
            subprocess.run(["sox", "-n", "-r", "16000", "-b", "16", "-c", "1",
                            str(folder / "_background_noise_" / f"{kind}.wav"), "synth", "5", kind, "vol", "0.3"],
                           check=True, capture_output=True)
    return folder
