"""Quiet by default: only the project's own lines on the console, TensorFlow's noise only with --verbose.

TensorFlow's C++ logs (the oneDNN and CUDA notices written before absl::InitializeLog, `cuInit` errors, "NodeDef
mentions attribute use_unbounded_threadpool" on every conversion, the converter's "fully_quantize: ..." line) go
straight to file descriptor 2, past Python. So the CLI puts a filter on the descriptor: a pipe whose reader passes
every line on to the real stderr except those noise lines. Python-side warnings (absl's "compiled metrics" notice,
TensorFlow's and Keras' UserWarnings) are switched off by logger level and warnings filter. Only the CLI installs
this (tasks.py); a library user or a test gets TensorFlow as it is.
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings

VERBOSE_ENV = "MCU_DEPLOY_VERBOSE"
# A line TensorFlow (or absl, or the MLIR quantizer) wrote that says nothing about the user's model.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "  # absl/tsl C++ log lines: I0000 00:00:1796190004.58 31938 port.cc:153]
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU"
    r"|fully_quantize: \d+, inference_type: "
    r"|WARNING:absl:"
    r"|W0000 )")
_installed = False


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def setup(verbose_: bool) -> None:
    """Called by every task that may load TensorFlow, before it does."""
    global _installed
    if verbose_:
        os.environ[VERBOSE_ENV] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.pop(VERBOSE_ENV, None)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # C++ errors too: cuInit, NodeDef attribute notices
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    for module in ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "absl"):
        warnings.filterwarnings("ignore", module=module + r"(\.|$)")
    if not _installed:
        _filter_fd2()
        _installed = True


def _filter_fd2() -> None:
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        with os.fdopen(read_end, "rb", buffering=0) as source:
            pending = b""
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not NOISE.match(line.decode(errors="replace")):
                        os.write(real, line + b"\n")
            if pending and not NOISE.match(pending.decode(errors="replace")):
                os.write(real, pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def restore():
        try:
            sys.stderr.flush()
        except (ValueError, OSError):
            pass
        os.dup2(real, 2)  # the pipe's last writer closes: the pump drains it and ends
        thread.join(timeout=5)

    atexit.register(restore)
