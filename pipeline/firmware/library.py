"""The deployed model as a library: a C API (C99 header, C++ implementation over TFLM) rendered from the templates
in firmware/library/ with the library's name as the prefix of every symbol, plus the generated model files in the
library's own namespace. One implementation: the benchmark harness of every framework is built from it too
(firmware/common/model_runner.cc is a thin user of the API), and `invoke export` packages it per framework.
"""
from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.firmware import codegen

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
TEMPLATES = FIRMWARE_DIR / "library"
TEMPLATE_FILES = (TEMPLATES / "model.h", TEMPLATES / "model.cc", TEMPLATES / "model_arena.cc")
# What the harness includes to reach the library whatever its name (rendered into every harness project).
HARNESS_HEADER = "model_library.h"
C_KEYWORDS = {"auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum",
              "extern", "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return",
              "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void",
              "volatile", "while", "bool", "class", "namespace", "new", "delete", "template", "this", "operator"}


def c_name(name: str) -> str:
    """A name as a C identifier prefix: lower case, [a-z0-9_], not starting with a digit, not a keyword."""
    ident = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not ident:
        raise PipelineError(f"--name '{name}' has no letter or digit to make a C identifier of: pass e.g. --name=my_model")
    if ident[0].isdigit():
        ident = "m_" + ident
    if ident in C_KEYWORDS or keyword.iskeyword(ident):
        ident += "_model"
    return ident


@dataclass
class LibraryFiles:
    prefix: str
    header: str          # the public C header's file name
    sources: list[str]   # the C++ sources to compile (after the renaming of `source_ext`)
    private_headers: list[str]
    settings: dict


def _substitute(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = re.search(r"@[A-Z_]+@", text)
    if leftover:
        raise PipelineError(f"library template has an unrendered placeholder {leftover.group(0)}")
    return text


def render(generated_dir: Path, prefix: str, out_dir: Path, board_name: str, kernels: str,
           source_ext: str = ".cc", tflm_prelude: str = "", model_files: bool = True) -> LibraryFiles:
    """Writes `<prefix>.h`, `<prefix>.cc`, `<prefix>_arena.cc` and the namespaced model files into `out_dir`.
    `source_ext` renames the C++ sources (Arduino compiles .cpp, not .cc); `tflm_prelude` is a line the
    implementation includes first (the Arduino TFLM library's main header, which makes arduino-cli find it)."""
    if c_name(prefix) != prefix:
        raise PipelineError(f"library name '{prefix}' is not a C identifier prefix (use {c_name(prefix)})")
    settings = codegen.settings(generated_dir)
    model = codegen.namespaced(generated_dir, prefix)
    values = {"P": prefix, "PU": prefix.upper(), "NAME": prefix, "MODEL": settings["model_name"],
              "BOARD": board_name, "KERNELS": kernels, "TFLM_PRELUDE": tflm_prelude,
              "INPUT_SIZE": str(settings["input_size"]), "OUTPUT_SIZE": str(settings["output_size"]),
              "ARENA_SIZE": str(settings["arena_bytes"]), "LABEL_COUNT": str(settings["label_count"]),
              "INPUT_SHAPE": settings["input_shape"], "OUTPUT_SHAPE": settings["output_shape"],
              "HAS_AUDIO": "1" if settings["audio_frontend"] else "0"}
    values.update({key.upper(): str(settings[key]) for key in ("audio_sample_rate", "audio_stride_samples",
                                                               "audio_frames", "audio_channels", "audio_mel_channels")})
    out_dir.mkdir(parents=True, exist_ok=True)
    ext = lambda name: name[:-3] + source_ext if name.endswith(".cc") else name  # noqa: E731
    header = f"{prefix}.h"
    files = {header: _substitute((TEMPLATES / "model.h").read_text(), values),
             f"{prefix}.cc": _substitute((TEMPLATES / "model.cc").read_text(), values),
             f"{prefix}_arena.cc": _substitute((TEMPLATES / "model_arena.cc").read_text(), values)}
    if model_files:
        files.update(model)
    for name, text in files.items():
        (out_dir / ext(name)).write_text(text)
    return LibraryFiles(prefix, header, [ext(n) for n in files if n.endswith(".cc")],
                        [n for n in files if n.endswith(".h") and n != header], settings)


# TFLM's audio front end, compiled in with the library of a model trained on audio (model.cc includes its headers):
# the sources under a TFLM tree (also in esp-tflite-micro and Zephyr's tflite-micro module), and kissfft, which
# kiss_fft_int16.cc includes (TFLM's Makefile downloads it; pinned v130 with TFLM's patch).
MICROFRONTEND_DIR = "tensorflow/lite/experimental/microfrontend/lib"
MICROFRONTEND_C = ("frontend.c", "frontend_util.c", "filterbank.c", "filterbank_util.c", "log_lut.c", "log_scale.c",
                   "log_scale_util.c", "noise_reduction.c", "noise_reduction_util.c", "pcan_gain_control.c",
                   "pcan_gain_control_util.c", "window.c", "window_util.c")
MICROFRONTEND_CC = ("fft.cc", "fft_util.cc", "kiss_fft_int16.cc")
KISSFFT_DIR = "tensorflow/lite/micro/tools/make/downloads/kissfft"


def microfrontend_sources(tflm: Path) -> tuple[list[Path], list[Path], list[str]]:
    """The microfrontend's C and C++ sources in a TFLM tree and the include flags they need; a tree without them
    is refused in one line naming what is missing."""
    lib = Path(tflm) / MICROFRONTEND_DIR
    c, cc = [lib / n for n in MICROFRONTEND_C], [lib / n for n in MICROFRONTEND_CC]
    missing = [p for p in (*c, *cc) if not p.is_file()]
    if missing:
        raise PipelineError(f"the model takes audio, and {tflm} lacks TFLM's audio front end ({missing[0]}): use a "
                            f"TFLM tree with {MICROFRONTEND_DIR}/")
    kissfft = Path(tflm) / KISSFFT_DIR
    if not (kissfft / "kiss_fft.c").is_file():
        raise PipelineError(f"the model takes audio, and {tflm} has no kissfft at {kissfft} (the microfrontend's FFT): "
                            "run TFLM's Makefile once (it downloads it), e.g. `make -f "
                            "tensorflow/lite/micro/tools/make/Makefile third_party_downloads`")
    return c, cc, [f"-I{tflm}", f"-I{kissfft}"]


HARNESS_PROFILE_OPS = 256  # operators the harness times per inference (xprofile)


def render_harness_header(prefix: str, out_dir: Path) -> None:
    """model_library.h: the harness (model_runner, the ports) reaches the library through MODEL_LIB(fn) whatever
    the library's name; `<prefix>_config.h` turns the library's per-operator timing on for xprofile."""
    (out_dir / f"{prefix}_config.h").write_text(
        f"/* Rendered by mcu-deploy for the benchmark harness: time up to {HARNESS_PROFILE_OPS} operators per "
        f"inference (xprofile). */\n#define {prefix.upper()}_PROFILE_MAX_OPS {HARNESS_PROFILE_OPS}\n")
    (out_dir / HARNESS_HEADER).write_text(
        f"/* Rendered by mcu-deploy: the benchmark harness calls the model library `{prefix}` through these names. */\n"
        f"#ifndef MODEL_LIBRARY_H_\n#define MODEL_LIBRARY_H_\n\n#include \"{prefix}.h\"\n\n"
        f"#define MODEL_LIB(fn) {prefix}_##fn\n"
        f"#define MODEL_LIB_OK {prefix.upper()}_OK\n"
        f"#define MODEL_LIB_ARENA_SIZE {prefix.upper()}_ARENA_SIZE\n"
        f"#define MODEL_LIB_INPUT_SIZE {prefix.upper()}_INPUT_SIZE\n"
        f"#define MODEL_LIB_OUTPUT_SIZE {prefix.upper()}_OUTPUT_SIZE\n"
        f"/* The model's settings (the audio front end's among them) and their namespace, for the harness's C++. */\n"
        f"#define MODEL_LIB_SETTINGS_H \"{prefix}_model_settings.h\"\n"
        f"#define MODEL_LIB_NAMESPACE {prefix}_model\n\n#endif  /* MODEL_LIBRARY_H_ */\n")
