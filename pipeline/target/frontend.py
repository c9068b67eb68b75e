"""The audio front end: 16-bit PCM -> the keyword model's features, the same C code on the host and the device.

TFLM's microfrontend (windowing, FFT, mel filterbank, noise reduction, PCAN gain control, log scale) as compiled
into PyPI's `pymicro-features` 2.0.2 (Apache-2.0): its shared library exports the microfrontend's own C API
(FrontendFillConfigWithDefaults, FrontendPopulateState, FrontendProcessSamples, FrontendReset,
FrontendFreeStateContents), called here through ctypes with a FrontendConfig filled from FrontEndSettings, the
same way a device's hook fills its own (firmware/common/tflm_backend.cc). So the settings are free on the host
too (the binding's Python API takes none), and training, the emulator and `invoke measure` share one
implementation. Checked bit for bit against TFLM's microfrontend sources (with TFLM's kissfft v130) compiled on
the host, at the default and at other settings (tests/data/frontend_crosscheck.json).

Not TensorFlow's `audio_microfrontend` op: TF 2.21's build of it differs from TFLM's in a few values per clip (the
cause is not established: the same sources built here with kissfft 131.1.0, TF's pin, still match TFLM, not the op),
so features made by it would not be a device's.

The microfrontend emits one `mel_channels` frame per stride; the model takes `frames` x `channels` per clip.
`pool` keeps every `frame_step`-th frame and averages each `channel_group` adjacent mel channels, in integers
(round half up), so a device doing the same sums gets the same values bit for bit. The defaults (40 channels
every 10 ms, pooled to 49 x 10 on a 20 ms grid) are the DS-CNN's (MLPerf Tiny KWS) input; other settings keep
that grid: frame_step = 20 ms / stride, channel_group = mel_channels / 10.
"""
from __future__ import annotations

import ctypes
import time
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from pipeline.errors import PipelineError

# The model's float input is the uint16 feature times FEATURE_SCALE (the log-scaled values reach ~1000): the
# device multiplies by the same constant before quantizing to the model's int8 input.
FEATURE_SCALE = 1.0 / 256.0
LIBRARY = "pymicro-features"
# The model's feature grid the front end's settings are pooled to (the DS-CNN's 49 x 10 per second).
FEATURE_STRIDE_MS = 20
FEATURE_CHANNELS = 10
MAX_STRIDE_SAMPLES = 512    # the harness core's stride buffer (firmware/harness/ee_core.c)
MAX_MEL_CHANNELS = 64       # EE_MAX_MEL_CHANNELS (firmware/harness/ee_core.h)


@dataclass(frozen=True)
class FrontEndSettings:
    library: str = LIBRARY
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

    @property
    def is_default(self) -> bool:
        return self == FrontEndSettings()

    def as_dict(self) -> dict:
        d = asdict(self)
        d["version"] = library_version()
        d["feature_shape"] = list(self.feature_shape)
        d["feature_scale"] = FEATURE_SCALE
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FrontEndSettings":
        """The settings a report or a build recorded (as_dict's extra keys are left out)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def describe(self) -> str:
        """The settings that differ from the default, e.g. "stride_ms=20,mel_channels=20" ("default" for none)."""
        base = FrontEndSettings()
        changed = [f"{f.name}={_text(getattr(self, f.name))}" for f in fields(self)
                   if f.name not in DERIVED and getattr(self, f.name) != getattr(base, f.name)]
        return ",".join(changed) or "default"


SETTINGS = FrontEndSettings()
# What --frontend may set, and its type; frame_step and channel_group follow from stride_ms and mel_channels.
KNOBS = {"window_ms": int, "stride_ms": int, "mel_channels": int, "lower_band_hz": float, "upper_band_hz": float,
         "noise_reduction": bool, "pcan": bool, "pcan_strength": float, "log_scale": bool}
DERIVED = ("library", "frame_step", "channel_group", "frames", "clip_samples", "sample_rate")


def _text(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def _value(key: str, text: str):
    kind = KNOBS[key]
    if kind is bool:
        if text.lower() in ("1", "on", "true", "yes"):
            return True
        if text.lower() in ("0", "off", "false", "no"):
            return False
        raise PipelineError(f"--frontend {key}={text}: give on or off")
    try:
        return kind(text)
    except ValueError:
        raise PipelineError(f"--frontend {key}={text}: not a{'n integer' if kind is int else ' number'}") from None


def parse(text: str | None) -> FrontEndSettings:
    """--frontend=KEY=VALUE,... (e.g. "stride_ms=20,mel_channels=20") over the defaults, checked."""
    if not text or text == "default":
        return SETTINGS
    changes = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or key not in KNOBS:
            raise PipelineError(f"--frontend: '{part.strip()}' is not KEY=VALUE with KEY one of {', '.join(KNOBS)}")
        changes[key] = _value(key, value.strip())
    return settings_with(**changes)


def settings_with(**changes) -> FrontEndSettings:
    """The defaults with these changes, pooled to the model's grid (FEATURE_STRIDE_MS, FEATURE_CHANNELS); a
    setting the microfrontend, the harness or the grid cannot take is refused in one line."""
    s = replace(SETTINGS, **changes)
    if s.stride_ms <= 0 or FEATURE_STRIDE_MS % s.stride_ms:
        raise PipelineError(f"--frontend stride_ms={s.stride_ms}: must divide the model's {FEATURE_STRIDE_MS} ms "
                            "feature stride (5, 10 or 20)")
    if s.stride_samples > MAX_STRIDE_SAMPLES:
        raise PipelineError(f"--frontend stride_ms={s.stride_ms}: over the harness's {MAX_STRIDE_SAMPLES}-sample stride")
    if not s.stride_ms <= s.window_ms <= 64:
        raise PipelineError(f"--frontend window_ms={s.window_ms}: must be from stride_ms ({s.stride_ms}) to 64 "
                            "(the microfrontend's FFT works on the window)")
    if s.mel_channels <= 0 or s.mel_channels % FEATURE_CHANNELS or s.mel_channels > MAX_MEL_CHANNELS:
        raise PipelineError(f"--frontend mel_channels={s.mel_channels}: must be a multiple of the model's "
                            f"{FEATURE_CHANNELS} feature channels, at most {MAX_MEL_CHANNELS}")
    if not 0 < s.lower_band_hz < s.upper_band_hz <= s.sample_rate / 2:
        raise PipelineError(f"--frontend band {s.lower_band_hz:g}..{s.upper_band_hz:g} Hz: need 0 < lower < upper "
                            f"<= {s.sample_rate // 2} Hz")
    if not 0.0 <= s.pcan_strength <= 1.0:
        raise PipelineError(f"--frontend pcan_strength={s.pcan_strength:g}: must be in [0, 1]")
    return replace(s, frame_step=FEATURE_STRIDE_MS // s.stride_ms, channel_group=s.mel_channels // FEATURE_CHANNELS)


def library_version() -> str:
    from importlib import metadata

    try:
        return metadata.version(LIBRARY)
    except metadata.PackageNotFoundError:
        return "not installed"


# -- the microfrontend's C API (tensorflow/lite/experimental/microfrontend/lib/frontend{,_util}.h) -------------
class _Config(ctypes.Structure):
    _fields_ = [("window_size_ms", ctypes.c_size_t), ("window_step_size_ms", ctypes.c_size_t),
                ("num_channels", ctypes.c_int), ("upper_band_limit", ctypes.c_float),
                ("lower_band_limit", ctypes.c_float), ("output_scale_shift", ctypes.c_int),
                ("smoothing_bits", ctypes.c_int), ("even_smoothing", ctypes.c_float),
                ("odd_smoothing", ctypes.c_float), ("min_signal_remaining", ctypes.c_float),
                ("enable_pcan", ctypes.c_int), ("strength", ctypes.c_float), ("offset", ctypes.c_float),
                ("gain_bits", ctypes.c_int), ("enable_log", ctypes.c_int), ("scale_shift", ctypes.c_int)]


class _Output(ctypes.Structure):
    _fields_ = [("values", ctypes.POINTER(ctypes.c_uint16)), ("size", ctypes.c_size_t)]


_STATE_BYTES = 1024  # struct FrontendState is ~240 bytes on a 64-bit host: opaque here, with room to spare
_lib = None


def _library():
    global _lib
    if _lib is None:
        import importlib.util

        spec = importlib.util.find_spec("micro_features_cpp")
        if spec is None or not spec.origin:
            raise PipelineError("the audio front end needs pymicro-features: pip install 'pymicro-features==2.0.2'")
        lib = ctypes.CDLL(spec.origin)
        try:
            lib.FrontendFillConfigWithDefaults.argtypes = [ctypes.c_void_p]
            lib.FrontendPopulateState.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
            lib.FrontendPopulateState.restype = ctypes.c_int
            lib.FrontendProcessSamples.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                   ctypes.POINTER(ctypes.c_size_t)]
            lib.FrontendProcessSamples.restype = _Output
            lib.FrontendReset.argtypes = [ctypes.c_void_p]
            lib.FrontendFreeStateContents.argtypes = [ctypes.c_void_p]
        except AttributeError as exc:
            raise PipelineError(f"pymicro-features {library_version()} does not export the microfrontend's C API "
                                f"({exc}): pip install 'pymicro-features==2.0.2'") from None
        _lib = lib
    return _lib


class Stream:
    """One microfrontend state fed one stride at a time, as a device's hook does: process() returns the frame's
    `mel_channels` uint16 values, or None while the window is still filling."""

    def __init__(self, settings: FrontEndSettings = SETTINGS):
        self.settings, self.lib = settings, _library()
        config = _Config()
        self.lib.FrontendFillConfigWithDefaults(ctypes.byref(config))
        config.window_size_ms, config.window_step_size_ms = settings.window_ms, settings.stride_ms
        config.num_channels = settings.mel_channels
        config.lower_band_limit, config.upper_band_limit = settings.lower_band_hz, settings.upper_band_hz
        config.smoothing_bits = settings.noise_smoothing_bits
        config.even_smoothing, config.odd_smoothing = settings.noise_even_smoothing, settings.noise_odd_smoothing
        # min_signal_remaining 1.0 is the microfrontend's "noise reduction off" (as the device's hook sets it)
        config.min_signal_remaining = settings.noise_min_signal_remaining if settings.noise_reduction else 1.0
        config.enable_pcan, config.strength = int(settings.pcan), settings.pcan_strength
        config.offset, config.gain_bits = settings.pcan_offset, settings.pcan_gain_bits
        config.enable_log, config.scale_shift = int(settings.log_scale), settings.log_scale_shift
        self.state = (ctypes.c_uint64 * (_STATE_BYTES // 8))()
        if not self.lib.FrontendPopulateState(ctypes.byref(config), self.state, settings.sample_rate):
            self.state = None
            raise PipelineError(f"the microfrontend refused the settings {settings.describe()}")
        self._read = ctypes.c_size_t()

    def reset(self) -> None:
        self.lib.FrontendReset(self.state)

    def process(self, samples) -> np.ndarray | None:
        pcm = np.ascontiguousarray(samples, dtype=np.int16)
        out = self.lib.FrontendProcessSamples(self.state, pcm.ctypes.data, len(pcm), ctypes.byref(self._read))
        if not out.size:
            return None
        return np.ctypeslib.as_array(out.values, (out.size,)).copy()

    def __del__(self):
        if getattr(self, "state", None) is not None:
            self.lib.FrontendFreeStateContents(self.state)
            self.state = None


def raw_frames(pcm: np.ndarray, settings: FrontEndSettings = SETTINGS) -> np.ndarray:
    """The microfrontend's uint16 frames (n, mel_channels) for int16 PCM, streamed one stride at a time from a
    fresh state, as a device calls it."""
    stream = Stream(settings)
    pcm = np.ascontiguousarray(pcm, dtype=np.int16)
    step = settings.stride_samples
    frames = [f for start in range(0, len(pcm) - step + 1, step)
              if (f := stream.process(pcm[start:start + step])) is not None]
    if not frames:
        return np.zeros((0, settings.mel_channels), np.uint16)
    return np.stack(frames)


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
    return {"source": f"host ({LIBRARY}'s microfrontend, {settings.describe()} settings, measured wall time)", "clips_per_s": clips / elapsed,
            "frames_per_s": clips * frames_per_clip / elapsed, "realtime_factor": clips * settings.clip_samples
            / settings.sample_rate / elapsed}


# The op count's absolute scale, measured: TFLM's microfrontend at the default settings took 7.46 M instructions per
# second of audio, 76,100 per frame (median of 10 spoken test clips, 98 frames each; QEMU -icount instruction count
# of this project's Cortex-M4F harness image with TFLM 90b983c2, arm-none-eabi-gcc 12.2.1 -O2, through xaudio, its
# pooling included). The relative model below scales it to other settings.
MEASURED_INSTRUCTIONS_PER_FRAME = 76100


def _relative_ops(settings: FrontEndSettings) -> tuple[int, int]:
    """A relative op count per frame: a real FFT of the window's power-of-two size (~ N/2 log2 N radix-2
    butterflies of ~10 integer ops each), the windowing and filterbank, and per channel ~8 ops of noise reduction,
    ~20 of PCAN and ~12 of log scale where they are on; and the FFT size."""
    fft = 1 << (settings.window_samples - 1).bit_length()
    butterflies = fft // 2 * (fft.bit_length() - 1)
    per_channel = 8 * settings.noise_reduction + 20 * settings.pcan + 12 * settings.log_scale
    return butterflies * 10 + settings.window_samples * 3 + fft // 2 * 4 + settings.mel_channels * per_channel, fft


def estimated_cycles(settings: FrontEndSettings = SETTINGS) -> dict:
    """An ESTIMATE of the front end's instructions per one-second clip (times a per-core cycles-per-instruction left
    to the caller): the measured instructions per frame at the defaults, scaled by the relative op count of these
    settings, times the frames per clip."""
    ops, fft = _relative_ops(settings)
    per_frame = round(MEASURED_INSTRUCTIONS_PER_FRAME * ops / _relative_ops(SETTINGS)[0])
    frames = (settings.clip_samples - settings.window_samples) // settings.stride_samples + 1
    return {"ops_per_frame": per_frame, "frames": frames, "ops": per_frame * frames, "fft_size": fft}
