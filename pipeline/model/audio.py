"""Audio datasets: a folder of class sub-folders of .wav files, or an .npz of raw int16 audio, turned into the
keyword model's features by the front end (pipeline/target/frontend.py), the same C code a device runs.

WAV files of any common rate and width are mixed down to mono (mean of the channels) and resampled to the front
end's rate with scipy's polyphase filter, then clipped or zero-padded (centred) to one window. A
`_background_noise_` folder (Speech Commands' layout) is mixed into training clips at NOISE_SNR_DB and gives a
`_silence_` class of noise-only clips; both seeded.
"""
from __future__ import annotations

import json
from math import gcd
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.target import frontend

NOISE_FOLDER = "_background_noise_"
SILENCE = "_silence_"
NOISE_SNR_DB = 10.0      # speech-to-noise ratio of the background mixed in
NOISE_FRACTION = 0.8     # share of clips that get background noise
MIN_RATE = 16000         # a lower rate leaves the front end's upper mel bands (to 7500 Hz) empty


def _wavs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".wav")


def is_audio(source: str) -> bool:
    """Cheap: a folder whose class sub-folders hold .wav files, or an .npz whose x_train is int16 audio."""
    path = Path(source)
    if path.is_dir():
        return any(_wavs(d) for d in path.iterdir() if d.is_dir())
    if path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as archive:
                x = archive["x_train"] if "x_train" in archive.files else None
                return x is not None and x.dtype == np.int16 and x.ndim == 2
        except (OSError, ValueError):
            return False
    return False


def fingerprint_extra(settings: frontend.FrontEndSettings = frontend.SETTINGS) -> bytes:
    """The front end's settings and library version: part of every audio dataset's fingerprint (the build key)."""
    return json.dumps(settings.as_dict(), sort_keys=True).encode()


def read_wav(path: Path, settings=frontend.SETTINGS) -> tuple[np.ndarray, list[str]]:
    """int16 mono PCM at the front end's rate, and what was converted (for a one-line note)."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError, EOFError) as exc:
        raise PipelineError(f"dataset audio {path} cannot be read as a WAV file: {exc}") from None
    if data.size == 0:
        raise PipelineError(f"dataset audio {path} holds no samples")
    if rate < MIN_RATE:
        raise PipelineError(f"dataset audio {path} is sampled at {rate} Hz; the front end needs {settings.sample_rate} Hz "
                            f"audio and upsampling from under {MIN_RATE} Hz leaves its mel bands to 7500 Hz empty: "
                            f"record or export at {MIN_RATE} Hz or more")
    done = []
    if data.dtype == np.uint8:
        x = (data.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        x = data.astype(np.float64) / float(-np.iinfo(data.dtype).min)
    else:
        x = data.astype(np.float64)
    if data.dtype != np.int16:
        done.append(f"{data.dtype} samples")
    if x.ndim == 2:
        x = x.mean(axis=1)
        done.append(f"{data.shape[1]} channels mixed down")
    if rate != settings.sample_rate:
        g = gcd(rate, settings.sample_rate)
        x = resample_poly(x, settings.sample_rate // g, rate // g)
        done.append(f"{rate} Hz resampled")
    if not np.isfinite(x).all():
        raise PipelineError(f"dataset audio {path} holds NaN or infinite samples")
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16), done


def fit_window(pcm: np.ndarray, samples: int) -> np.ndarray:
    """Clip or zero-pad to `samples`, centred (a spoken word usually sits mid-file)."""
    if len(pcm) >= samples:
        start = (len(pcm) - samples) // 2
        return pcm[start:start + samples]
    out = np.zeros(samples, np.int16)
    start = (samples - len(pcm)) // 2
    out[start:start + len(pcm)] = pcm
    return out


def _mix(clip: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    c, n = clip.astype(np.float64), noise.astype(np.float64)
    pc, pn = np.mean(c ** 2), np.mean(n ** 2)
    if pn == 0:
        return clip
    gain = np.sqrt(pc / (pn * 10 ** (snr_db / 10))) if pc > 0 else 1.0
    return np.clip(np.rint(c + gain * n), -32768, 32767).astype(np.int16)


def _noise_segment(noises: list[np.ndarray], rng, samples: int) -> np.ndarray:
    n = noises[rng.integers(len(noises))]
    if len(n) <= samples:
        return fit_window(n, samples)
    start = rng.integers(len(n) - samples)
    return n[start:start + samples]


def wav_folder_examples(path: Path, num_classes: int | None, seed: int, settings: frontend.FrontEndSettings = frontend.SETTINGS,
                        log=print):
    """Features, labels and class names of a folder of class sub-folders of .wav files (split by the caller).
    num_classes: a brought model's fixed outputs (the names padded to it), or None: as many as the data has."""
    clips, y, labels = wav_folder_clips(path, num_classes, seed, settings, log)
    log(f"audio: {len(clips)} clips -> {settings.library} microfrontend ({settings.describe()} settings) -> "
        f"{settings.frames}x{settings.channels} features")
    return frontend.batch_features(clips, settings), y, labels


def wav_folder_clips(path: Path, num_classes: int | None, seed: int, settings: frontend.FrontEndSettings = frontend.SETTINGS,
                     log=print):
    """The int16 clips (N, clip_samples) as training sees them (noise mixed, silence added), labels, class names."""
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name != NOISE_FOLDER)
    if not classes:
        raise PipelineError(f"dataset folder {path} has no class sub-folders (expected {path}/<word>/<clip>.wav)")
    rng = np.random.default_rng(seed)
    noises, conversions = [], {}
    if (path / NOISE_FOLDER).is_dir():
        for f in _wavs(path / NOISE_FOLDER):
            pcm, done = read_wav(f, settings)
            noises.append(pcm)
            for d in done:
                conversions[d] = conversions.get(d, 0) + 1
    n_classes = len(classes) + (1 if noises and SILENCE not in classes else 0)
    if n_classes < 2:
        raise PipelineError(f"dataset folder {path} has 1 class ({classes[0]}): a keyword spotter needs at least 2 "
                            f"(e.g. the word and {path}/_unknown_/ or a {NOISE_FOLDER}/ folder for {SILENCE})")
    if num_classes is not None and n_classes > num_classes:
        raise PipelineError(f"dataset folder {path} has {n_classes} classes ({', '.join(classes)}"
                            f"{', ' + SILENCE if n_classes > len(classes) else ''}), but the model has {num_classes}")
    clips, ys = [], []
    for label, name in enumerate(classes):
        files = _wavs(path / name)
        if not files and not (name == SILENCE and noises):
            raise PipelineError(f"dataset folder {path / name} holds no .wav files (class '{name}')")
        for f in files:
            pcm, done = read_wav(f, settings)
            for d in done:
                conversions[d] = conversions.get(d, 0) + 1
            clips.append(fit_window(pcm, settings.clip_samples))
            ys.append(label)
    if noises:
        if SILENCE not in classes:
            classes.append(SILENCE)
        silence = classes.index(SILENCE)
        per_class = max(3, len(clips) // max(1, len(classes) - 1))
        for _ in range(per_class):
            level = rng.uniform(0.0, 1.0)
            clips.append(np.rint(_noise_segment(noises, rng, settings.clip_samples) * level).astype(np.int16))
            ys.append(silence)
        for i in range(len(clips)):
            if ys[i] != silence and rng.uniform() < NOISE_FRACTION:
                clips[i] = _mix(clips[i], _noise_segment(noises, rng, settings.clip_samples), NOISE_SNR_DB)
    counts = np.bincount(ys, minlength=len(classes))
    if counts.min() < 3:
        few = [classes[i] for i in np.flatnonzero(counts < 3)]
        raise PipelineError(f"dataset folder {path}: classes {', '.join(few)} have fewer than 3 clips (one each for train, validation, test)")
    if conversions:
        log(f"audio: converted to {settings.sample_rate} Hz mono int16 (scipy polyphase resampling, mean mix-down): "
            + ", ".join(f"{n} files {d}" for d, n in sorted(conversions.items())))
    if noises:
        log(f"audio: {NOISE_FOLDER} ({len(noises)} files) mixed into {NOISE_FRACTION:.0%} of clips at {NOISE_SNR_DB:g} dB SNR, "
            f"{int(counts[classes.index(SILENCE)])} {SILENCE} clips, seed {seed}")
    labels = classes + [f"class{i}" for i in range(len(classes), num_classes or len(classes))]
    return np.stack(clips), np.array(ys, dtype=np.int64), labels


def npz_examples(path: Path, settings: frontend.FrontEndSettings = frontend.SETTINGS, log=print) -> tuple[dict, list | None]:
    """An .npz whose x_train/x_test hold int16 audio (N, samples) at the front end's rate: x_* as features,
    y_* as stored (checked by the caller), and the class names if it has them."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in archive.files]
            if missing:
                raise PipelineError(f"dataset {path} lacks {', '.join(missing)} (it has: {', '.join(archive.files)})")
            arrays = {k: archive[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            names = archive["labels"].tolist() if "labels" in archive.files else None
    except (OSError, ValueError) as exc:
        raise PipelineError(f"dataset {path} is not a readable .npz file: {exc}") from None
    for k in ("x_train", "x_test"):
        if arrays[k].dtype != np.int16 or arrays[k].ndim != 2 or arrays[k].shape[1] == 0:
            raise PipelineError(f"dataset {path}: {k} must be int16 audio of shape (N, samples) at "
                                f"{settings.sample_rate} Hz (got {arrays[k].dtype} {arrays[k].shape})")
    log(f"audio: {len(arrays['x_train']) + len(arrays['x_test'])} int16 clips at {settings.sample_rate} Hz -> "
        f"{settings.library} microfrontend ({settings.describe()} settings) -> {settings.frames}x{settings.channels} features")
    for k in ("x_train", "x_test"):
        arrays[k] = frontend.batch_features(np.stack([fit_window(c, settings.clip_samples) for c in arrays[k]]), settings)
    return arrays, names
