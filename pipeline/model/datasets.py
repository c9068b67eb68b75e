"""Datasets: the bundled ones (scikit-learn's 8x8 digits, a generated sine) and a user's own.

A user's dataset is either an .npz file with x_train, y_train, x_test, y_test, or a folder with one
sub-folder of images per class. Every dataset is split with a fixed seed into train, validation and test.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm"}


@dataclass
class Dataset:
    name: str
    task: str  # "classification" or "regression"
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: list[str]


def fingerprint(source: str, seed: int, frontend_settings=None) -> str:
    """A hash of what a dataset is made from, cheap enough to compute on every build (no TensorFlow).
    frontend_settings: an audio dataset's front end (pipeline.target.frontend.FrontEndSettings; None: the default)."""
    from pipeline.model import audio
    from pipeline.target import frontend

    h = hashlib.sha256(f"{source}|seed={seed}".encode())
    path = Path(source)
    if audio.is_audio(source):  # the features depend on the front end's settings and version
        h.update(audio.fingerprint_extra(frontend_settings or frontend.SETTINGS))
    if path.is_file():
        h.update(path.read_bytes())
    elif path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _split(x, y, seed: int, stratify: bool, fractions=(0.7, 0.15)):
    """Seeded train/validation/test split; stratified for classes so every split holds every class."""
    from sklearn.model_selection import train_test_split

    train_frac, val_frac = fractions
    # Whole counts: fractions like 0.15 / 0.3 land just under a half and round an example away.
    n_train = int(round(len(x) * train_frac))
    n_val = int(round(len(x) * val_frac))
    try:
        x_train, x_rest, y_train, y_rest = train_test_split(
            x, y, train_size=n_train, random_state=seed, stratify=y if stratify else None
        )
        x_val, x_test, y_val, y_test = train_test_split(
            x_rest, y_rest, train_size=n_val, random_state=seed, stratify=y_rest if stratify else None
        )
    except ValueError as exc:  # too few examples for every class to reach every split
        raise PipelineError(f"dataset of {len(x)} examples is too small to split into train/validation/test: {exc}") from None
    return x_train, y_train, x_val, y_val, x_test, y_test


def digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., np.newaxis]  # pixels are 0..16
    y = bunch.target.astype(np.int64)
    parts = _split(x, y, seed, stratify=True)
    return Dataset("digits", "classification", *parts, labels=[str(d) for d in range(10)])


def sine(seed: int, samples: int = 1000) -> Dataset:
    """The TFLM hello-world data: y = sin(x) + noise, x uniform in [0, 2*pi]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 2 * np.pi, size=(samples, 1)).astype(np.float32)
    y = (np.sin(x) + 0.1 * rng.standard_normal(size=x.shape)).astype(np.float32)
    parts = _split(x, y, seed, stratify=False, fractions=(0.6, 0.2))
    return Dataset("sine", "regression", *parts, labels=["y"])


def _check_x(x: np.ndarray, input_shape: tuple, where: str) -> np.ndarray:
    if x.ndim == len(input_shape) and input_shape[-1] == 1 and x.shape[1:] == tuple(input_shape[:-1]):
        x = x[..., np.newaxis]  # a missing trailing channel axis of 1 is harmless
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        expected = ", ".join(str(d) for d in input_shape)
        raise PipelineError(f"{where} has shape {tuple(x.shape)}, but the model expects (N, {expected})")
    if not np.issubdtype(x.dtype, np.number):
        raise PipelineError(f"{where} must be numeric (got dtype {x.dtype})")
    x = x.astype(np.float32)
    _check_finite(x, where)
    return x


def _check_finite(values: np.ndarray, where: str) -> None:
    """NaN or infinity would reach the int8 converter as a broken quantization range: name them here instead."""
    bad = ~np.isfinite(values)
    if bad.any():
        flat = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
        kinds = [k for k, m in (("NaN", np.isnan(values)), ("infinite", np.isinf(values))) if m.any()]
        raise PipelineError(f"{where} holds {int(bad.sum())} {' and '.join(kinds)} values in {len(flat)} examples "
                            f"(first: example {int(flat[0])}); clean or drop them before training")


def _check_labels(y: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise PipelineError(f"{where} has shape {y.shape}, but class labels must be a vector (N,) of integers")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.equal(np.mod(y, 1), 0)):
            raise PipelineError(f"{where} must hold integer class labels (got dtype {y.dtype})")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise PipelineError(
            f"{where} has labels {int(y.min())}..{int(y.max())}, but the model has {num_classes} classes (0..{num_classes - 1})"
        )
    return y


def _require_two_classes(count: int, where: str) -> None:
    if count < 2:
        raise PipelineError(f"{where} has {count} class{'' if count == 1 else 'es'}: a classifier needs at least 2 "
                            "(add a sub-folder or label per class, e.g. one for 'other')")


def _classes_of_npz(archive, path: Path) -> int:
    """How many classes an .npz holds: its `labels` names, or the largest label + 1."""
    highest = max(int(np.max(archive[k])) if archive[k].size else -1 for k in ("y_train", "y_test"))
    if "labels" in archive.files and archive["labels"].size:
        names = len(archive["labels"].tolist())
        if highest >= names:
            raise PipelineError(f"dataset {path} has labels up to {highest}, but only {names} names in `labels`")
        return names
    return highest + 1


def from_npz(path: Path, input_shape: tuple, num_classes: int | None, seed: int, autoencoder: bool,
             classes_from_data: bool = False) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"dataset {path} is not a readable .npz file: {exc}") from None
    keys = ("x_train", "x_test") if autoencoder else ("x_train", "y_train", "x_test", "y_test")
    missing = [k for k in keys if k not in archive.files]
    if missing:
        raise PipelineError(f"dataset {path} lacks {', '.join(missing)} (it has: {', '.join(archive.files) or 'nothing'})")
    x_train = _check_x(archive["x_train"], input_shape, f"dataset {path}: x_train")
    x_test = _check_x(archive["x_test"], input_shape, f"dataset {path}: x_test")
    if autoencoder:
        y_train, y_test, task, labels = x_train, x_test, "regression", ["reconstruction"]
    elif num_classes is None:
        y_train = archive["y_train"].astype(np.float32).reshape(len(x_train), -1)
        y_test = archive["y_test"].astype(np.float32).reshape(len(x_test), -1)
        _check_finite(y_train, f"dataset {path}: y_train")
        _check_finite(y_test, f"dataset {path}: y_test")
        task, labels = "regression", ["y"]
    else:
        if classes_from_data:
            try:
                found = _classes_of_npz(archive, path)
            except (TypeError, ValueError):  # labels that are not integers: _check_labels names the problem
                found = None
            if found is not None:
                _require_two_classes(found, f"dataset {path}")
                num_classes = found
        y_train = _check_labels(archive["y_train"], num_classes, f"dataset {path}: y_train")
        y_test = _check_labels(archive["y_test"], num_classes, f"dataset {path}: y_test")
        task = "classification"
        names = archive["labels"].tolist() if "labels" in archive.files else None
        labels = [str(n) for n in names] if names and len(names) == num_classes else [str(i) for i in range(num_classes)]
    if len(y_train) != len(x_train) or len(y_test) != len(x_test):
        raise PipelineError(f"dataset {path}: x and y hold different numbers of examples")
    if len(x_train) < 2 or len(x_test) < 1:
        raise PipelineError(f"dataset {path} needs at least 2 training and 1 test examples")
    # Validation comes out of the training part; a tiny set keeps one example for it.
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_train))
    n_val = max(1, len(x_train) // 10)
    val, train = order[:n_val], order[n_val:]
    return Dataset(path.stem, task, x_train[train], y_train[train], x_train[val], y_train[val], x_test, y_test, labels)


def from_image_folder(path: Path, input_shape: tuple, num_classes: int | None, seed: int) -> Dataset:
    """One class per sub-folder, in name order. num_classes: the model's fixed number of outputs (a brought
    model); None: as many classes as sub-folders (a zoo model's output layer is sized to them)."""
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if not classes:
        raise PipelineError(f"dataset folder {path} has no class sub-folders (expected {path}/<class>/<image>.png)")
    _require_two_classes(len(classes), f"dataset folder {path}")
    if num_classes is not None and len(classes) > num_classes:
        raise PipelineError(
            f"dataset folder {path} has {len(classes)} classes ({', '.join(classes)}), but the model has {num_classes}"
        )
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise PipelineError(f"an image folder needs a model with (height, width, 1 or 3) input, not {input_shape}")
    height, width, channels = input_shape
    mode = "L" if channels == 1 else "RGB"
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted((path / name).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as img:
                    arr = np.asarray(img.convert(mode).resize((width, height)), dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as exc:
                raise PipelineError(f"dataset image {f} cannot be read: {exc}") from None
            xs.append(arr.reshape(input_shape))
            ys.append(label)
    counts = np.bincount(ys, minlength=len(classes)) if ys else np.zeros(len(classes), int)
    if counts.min() < 3:
        empty = [classes[i] for i in np.flatnonzero(counts < 3)]
        raise PipelineError(f"dataset folder {path}: classes {', '.join(empty)} have fewer than 3 images (one each for train, validation, test)")
    parts = _split(np.stack(xs), np.array(ys, dtype=np.int64), seed, stratify=True)
    labels = classes + [f"class{i}" for i in range(len(classes), num_classes or len(classes))]
    return Dataset(path.name, "classification", *parts, labels=labels)


def _audio_npz(path: Path, num_classes: int | None, seed: int, settings, log) -> Dataset:
    from pipeline.model import audio

    arrays, names = audio.npz_examples(path, settings, log)
    if num_classes is None:  # a zoo model: the output layer follows the data's classes
        with np.load(path, allow_pickle=False) as archive:
            try:
                num_classes = _classes_of_npz(archive, path)
            except (TypeError, ValueError):  # labels that are not integers: _check_labels names the problem
                num_classes = 2
        _require_two_classes(num_classes, f"dataset {path}")
    y_train = _check_labels(arrays["y_train"], num_classes, f"dataset {path}: y_train")
    y_test = _check_labels(arrays["y_test"], num_classes, f"dataset {path}: y_test")
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if len(y_train) != len(x_train) or len(y_test) != len(x_test):
        raise PipelineError(f"dataset {path}: x and y hold different numbers of examples")
    if len(x_train) < 2 or len(x_test) < 1:
        raise PipelineError(f"dataset {path} needs at least 2 training and 1 test examples")
    order = np.random.default_rng(seed).permutation(len(x_train))
    n_val = max(1, len(x_train) // 10)
    val, train = order[:n_val], order[n_val:]
    labels = [str(n) for n in names] if names and len(names) == num_classes else [str(i) for i in range(num_classes)]
    return Dataset(path.stem, "classification", x_train[train], y_train[train], x_train[val], y_train[val],
                   x_test, y_test, labels)


def audio_test_clips(source: str, num_classes: int, seed: int, settings=None, log=print) -> tuple[np.ndarray, np.ndarray]:
    """The int16 clips of an audio dataset's test split (the same split as load's) and their labels, for a
    device that takes audio (num_classes: the model's outputs; settings: its front end's, None the default)."""
    from pipeline.model import audio

    settings = settings or audio.frontend.SETTINGS
    path = Path(source)
    if path.is_dir():
        clips, y, _labels = audio.wav_folder_clips(path, num_classes, seed, settings, log)
        test = _split(np.arange(len(y)), y, seed, stratify=True)[4]  # the split depends on the labels only
        return clips[test], y[test]
    with np.load(path, allow_pickle=False) as archive:
        clips = np.stack([audio.fit_window(c, settings.clip_samples) for c in archive["x_test"]])
        return clips, _check_labels(archive["y_test"], num_classes, f"dataset {path}: y_test")


def load(source: str, input_shape: tuple, num_classes: int | None, seed: int, autoencoder: bool = False,
         classes_from_data: bool = False, log=print, frontend_settings=None) -> Dataset:
    """A dataset by bundled name ("digits", "sine") or by path (.npz file, image folder, or audio: a folder of
    .wav class sub-folders or an .npz of int16 audio, see pipeline/model/audio.py).

    num_classes: None for regression; for a classifier its number of outputs, which the labels must fit, unless
    classes_from_data (a zoo model, whose output layer is sized to the data): then the data says how many.
    frontend_settings: an audio dataset's front end (pipeline.target.frontend.FrontEndSettings; None: the default)."""
    if source == "digits":
        data = digits(seed)
    elif source == "sine":
        data = sine(seed)
    else:
        path = Path(source)
        from pipeline.model import audio

        if audio.is_audio(source):
            from pipeline.target import frontend

            settings = frontend_settings or frontend.SETTINGS
            want = (*settings.feature_shape, 1)
            if num_classes is None or tuple(input_shape) != want:
                raise PipelineError(f"dataset {source} is audio: it needs a classifier with {want[0]}x{want[1]}x1 "
                                    f"input (--model=ds_cnn), not {tuple(input_shape)}")
            classes = None if classes_from_data else num_classes
            if path.is_dir():
                x, y, labels = audio.wav_folder_examples(path, classes, seed, settings, log)
                return Dataset(path.name, "classification", *_split(x, y, seed, stratify=True), labels=labels)
            return _audio_npz(path, classes, seed, settings, log)
        if path.is_dir():
            if num_classes is None:
                raise PipelineError(f"dataset folder {path}: image folders are for classification models")
            return from_image_folder(path, tuple(input_shape), None if classes_from_data else num_classes, seed)
        if path.suffix != ".npz" or not path.is_file():
            raise PipelineError(f"dataset {source} not found: pass 'digits', 'sine', an .npz file or a folder of class sub-folders")
        return from_npz(path, tuple(input_shape), num_classes, seed, autoencoder, classes_from_data)
    _check_x(data.x_train, tuple(input_shape), f"dataset {source}")
    if num_classes is not None and data.task != "classification":
        raise PipelineError(f"dataset {source} is a regression dataset; the model is a {num_classes}-class classifier")
    return data
