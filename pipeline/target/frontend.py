"""The audio front end: 16-bit PCM -> the keyword model's features, the same C code on the host and the device.

TFLM's microfrontend (windowing, FFT, mel filterbank, noise reduction, PCAN gain control, log scale) through PyPI's
`pymicro-features` (Apache-2.0), a Python binding of that C library. Its settings are fixed inside the binding
(its Python API takes none); they are recorded in SETTINGS so the build key, the report and the generated
model_settings.h carry them, and a device configures its own microfrontend with the same numbers.

The binding emits one 40-channel frame per 10 ms stride; the DS-CNN takes 49 frames x 10 channels per second.
`pool` keeps every second frame (a 20 ms stride, as MLPerf Tiny's KWS) and averages each 4 adjacent mel channels,
in integers (round half up), so a device doing the same sums gets the same values bit for bit.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from pipeline.errors import PipelineError

# The model's float input is the uint16 feature times FEATURE_SCALE (the log-scaled values reach ~1000): the
# device multiplies by the same constant before quantizing to the model's int8 input.
FEATURE_SCALE = 1.0 / 256.0
# The binding returns each frame's uint16 values times this scale (10/256, exact in binary floating point).
BINDING_SCALE = 0.0390625


@dataclass(frozen=True)
class FrontEndSettings:
    library: str = "pymicro-features"
    sample_rate: int = 16000
    window_ms: int = 30
    stride_ms: int = 10
    mel_channels: int = 40
    lower_band_hz: float = 125.0
    upper_band_hz: float = 7500.0
    noise_reduction: bool = True
    noise_smoothing_bits: int = 10
    noise_even_smoothing: float = 0.025
    noise_odd_smoothing: float = 0.06
    noise_min_signal_remaining: float = 0.05
    pcan: bool = True
    pcan_strength: float = 0.95
    pcan_offset: float = 80.0
    pcan_gain_bits: int = 21
    log_scale: bool = True
    log_scale_shift: int = 6
    # Pooling to the model's input (done by this project, in integers).
    frame_step: int = 2        # keep every `frame_step`-th frame
    channel_group: int = 4     # average groups of this many adjacent mel channels
    frames: int = 49           # frames per model input
    clip_samples: int = 16000  # one second of audio per example

    @property
    def stride_samples(self) -> int:
        return self.sample_rate * self.stride_ms // 1000

    @property
    def window_samples(self) -> int:
        return self.sample_rate * self.window_ms // 1000

    @property
    def channels(self) -> int:
        return self.mel_channels // self.channel_group

    @property
    def feature_shape(self) -> tuple[int, int]:
        return (self.frames, self.channels)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["version"] = library_version()
        d["feature_shape"] = list(self.feature_shape)
        d["feature_scale"] = FEATURE_SCALE
        return d


SETTINGS = FrontEndSettings()


def library_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pymicro-features")
    except metadata.PackageNotFoundError:
        return "not installed"


def _binding():
    try:
        import micro_features_cpp
    except ImportError:
        raise PipelineError("the audio front end needs pymicro-features: pip install 'pymicro-features==2.0.2'") from None
    return micro_features_cpp


def raw_frames(pcm: np.ndarray, settings: FrontEndSettings = SETTINGS) -> np.ndarray:
    """The microfrontend's uint16 frames (n, mel_channels) for int16 PCM, streamed one stride at a time from a
    fresh state, as a device calls it."""
    m = _binding()
    state = m.create_frontend()
    data = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
    step = settings.stride_samples * 2
    frames = []
    for start in range(0, len(data) - step + 1, step):
        features, _read = m.process_samples(state, data[start:start + step])
        if features:
            frames.append(features)
    if not frames:
        return np.zeros((0, settings.mel_channels), np.uint16)
    return np.rint(np.asarray(frames, np.float64) / BINDING_SCALE).astype(np.uint16)


def pool(frames: np.ndarray, settings: FrontEndSettings = SETTINGS) -> np.ndarray:
    """Every `frame_step`-th frame, mel channels averaged in groups (integer, round half up): (frames, channels)."""
    kept = frames[::settings.frame_step][: settings.frames].astype(np.uint32)
    if len(kept) < settings.frames:
        raise PipelineError(f"audio gives {len(kept)} feature frames, the model needs {settings.frames}: "
                            f"pass at least {settings.clip_samples} samples")
    g = settings.channel_group
    summed = kept.reshape(len(kept), settings.channels, g).sum(axis=2)
    return ((summed + g // 2) // g).astype(np.uint16)


def features(pcm: np.ndarray, settings: FrontEndSettings = SETTINGS) -> np.ndarray:
    """One clip of int16 PCM (clip_samples long) -> the model's uint16 features (frames, channels)."""
    return pool(raw_frames(pcm, settings), settings)


def batch_features(clips: np.ndarray, settings: FrontEndSettings = SETTINGS) -> np.ndarray:
    """(N, clip_samples) int16 -> (N, frames, channels, 1) float32 model inputs (uint16 features x FEATURE_SCALE)."""
    out = np.empty((len(clips), *settings.feature_shape, 1), np.float32)
    for i, clip in enumerate(clips):
        out[i, ..., 0] = features(clip, settings).astype(np.float32) * FEATURE_SCALE
    return out


def host_rate(seconds: float = 1.0, settings: FrontEndSettings = SETTINGS) -> dict:
    """Benchmark: feature frames (and one-second clips) computed per second of host wall time."""
    rng = np.random.default_rng(0)
    clip = rng.normal(0, 2000, settings.clip_samples).clip(-32768, 32767).astype(np.int16)
    clips, start = 0, time.perf_counter()
    while True:
        raw_frames(clip, settings)
        clips += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    frames_per_clip = (settings.clip_samples - settings.window_samples) // settings.stride_samples + 1
    return {"source": "host (pymicro-features, measured wall time)", "clips_per_s": clips / elapsed,
            "frames_per_s": clips * frames_per_clip / elapsed, "realtime_factor": clips * settings.clip_samples
            / settings.sample_rate / elapsed}


def estimated_cycles(settings: FrontEndSettings = SETTINGS) -> dict:
    """An estimate of the front end's work per one-second clip (not a measurement): a 512-point real FFT per
    stride (~ N/2 log2 N radix-2 butterflies of ~10 integer ops each), the windowing, filterbank, noise reduction,
    PCAN and log per frame, times a per-core cycles-per-op left to the caller."""
    fft = 1 << (settings.window_samples - 1).bit_length()
    butterflies = fft // 2 * (fft.bit_length() - 1)
    per_frame = butterflies * 10 + settings.window_samples * 3 + fft // 2 * 4 + settings.mel_channels * 40
    frames = (settings.clip_samples - settings.window_samples) // settings.stride_samples + 1
    return {"ops_per_frame": per_frame, "frames": frames, "ops": per_frame * frames}
