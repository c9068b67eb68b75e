"""Scratch buffers the board's optimized kernels ask for in the tensor arena, beyond TFLM's reference kernels.

The arena is measured on the host, where the pip TFLM runtime runs the reference kernels. A board's optimized
kernels replace some of them and request scratch buffers in Prepare (RequestScratchBufferInArena) that the host
never saw: on an ESP32-S3, ESP-NN's 3x3 convolution alone can ask for more than the whole host arena. One small
class per kernel family gives each op's extra request, from the kernels' own size rules:

- ESP-NN: esp-tflite-micro `tensorflow/lite/micro/kernels/esp_nn/*.cc` Prepare, with esp-nn's
  `esp_nn_get_{conv,depthwise_conv,softmax}_scratch_size` for the chip (the ESP32-S3 has its own; other chips use
  esp-nn's generic code, which asks for none). esp-tflite-micro ^1.3 takes any esp-nn >= 1.1.1 and the rules
  changed between esp-nn 1.2.0 and 1.2.1, so the larger of the two is used.
- CMSIS-NN: TFLM `tensorflow/lite/micro/kernels/cmsis_nn/*.cc` Prepare with CMSIS-NN's `arm_*_get_buffer_size`,
  built with GCC: with the DSP extension (Cortex-M4/M7/M33) or without (M0+).

TFLM rounds each request up to 16 bytes, and a scratch buffer lives only while its op runs, so the arena needs
the largest (live activations + that op's scratch) over the ops, which is at most the host's need plus the
largest single request. Checked against tables of the real size functions compiled for the host
(tests/data/*_scratch_cases.json).
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.boards import Board
from pipeline.target.graph import Graph, Op

ALIGN = 16  # TFLM's MicroArenaBufferAlignment(): every scratch request is rounded up to it


def align(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def leading_pad(size: int, kernel: int, stride: int, dilation: int, out: int) -> int:
    """The padding TFLM hands a conv kernel: the leading pad of SAME, 0 for VALID."""
    return max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size) // 2


@dataclass(frozen=True)
class ConvShape:
    """What the size rules read of a conv or depthwise op, in TFLite's NHWC terms."""
    n: int
    h: int
    w: int
    c: int
    kh: int
    kw: int
    oh: int
    ow: int
    oc: int
    sh: int
    sw: int
    dh: int
    dw: int
    ph: int
    pw: int
    filter_c: int
    depth_multiplier: int

    @classmethod
    def of(cls, op: Op) -> "ConvShape":
        n, h, w, c = op.activation_in[0].shape
        _, kh, kw, fc = op.weights.shape
        _, oh, ow, oc = op.outputs[0].shape
        o = op.options
        sh, sw, dh, dw = o.get("stride_h", 1), o.get("stride_w", 1), o.get("dilation_h", 1), o.get("dilation_w", 1)
        return cls(n, h, w, c, kh, kw, oh, ow, oc, sh, sw, dh, dw, leading_pad(h, kh, sh, dh, oh),
                   leading_pad(w, kw, sw, dw, ow), fc, o.get("depth_multiplier", 1))


class KernelFamily:
    """The extra scratch one op's kernel requests on a target, in bytes (0: none beyond the reference), and the
    margin the arena keeps on top of the host's need plus that scratch."""

    name = ""
    # Verified under QEMU -icount for every zoo model at two or three widths (TFLM 90b983c, 32-bit Cortex-M): the
    # device's arena_used_bytes stayed 972 (CMSIS-NN, M4F) and 1,052 (reference, ARMv6-M) bytes or more below the
    # host's need plus the computed scratch, because TFLM's structs are smaller on a 32-bit MCU. So no margin.
    margin_bytes = 0

    def scratch(self, op: Op, target: str) -> int:
        return 0


class Reference(KernelFamily):
    name = "reference"  # what the host measured: nothing extra


class EspNN(KernelFamily):
    name = "esp-nn"
    # Not verified on an ESP32 (no Xtensa build or ESP32 emulator of this firmware was run): esp-tflite-micro's kernels may keep
    # persistent data the reference kernels do not, so 1 KiB is kept on top.
    margin_bytes = 1024
    OWN_KERNELS = ("esp32s3",)  # chips with esp-nn code of their own; the rest run its generic C (no scratch)

    def scratch(self, op: Op, target: str) -> int:
        if op.kind == "SOFTMAX":
            # esp-tflite-micro passes the input's dims[1] as the width, on every chip: 4 bytes a value.
            shape = op.activation_in[0].shape
            return 4 * shape[1] if len(shape) > 1 else 4
        if target not in self.OWN_KERNELS or op.weights is None or len(op.activation_in[0].shape) != 4:
            return 0
        s = ConvShape.of(op)
        if op.kind == "CONV_2D":
            return max(self.s3_conv(s, old=False), self.s3_conv(s, old=True))
        if op.kind == "DEPTHWISE_CONV_2D":
            return max(self.s3_depthwise(s), self.s3_depthwise_before_1_2_1(s))
        return 0

    @staticmethod
    def s3_conv(s: ConvShape, old: bool) -> int:
        """esp_nn_get_conv_scratch_size_esp32s3: esp-nn <= 1.2.0 (old) or 1.2.3 (1.2.1/1.2.2 ask 32 bytes less)."""
        tail = 32 if old else 64
        if (s.kh, s.kw, s.ph, s.pw, s.sh, s.sw) == (1, 1, 0, 0, 1, 1):  # pointwise
            c8 = align(s.c, 8)
            return (s.h * s.w * c8 if s.c % 8 else 0) + c8 * s.oc + (0 if s.h * s.w < 8 else 16 * c8) + tail
        window = s.kh * s.kw * s.c
        if not old and s.kw * s.c < 16 and window >= 16:  # im2col path
            w16 = align(window, 16)
            return 4 * s.oc + 32 + s.oc * w16 + w16 + tail
        total = (0 if s.ph == 0 and s.pw == 0 else (s.w + 2 * s.pw) * (s.h + 2 * s.ph) * s.c)
        total += s.kh * s.kw * align(s.c, 16) * s.oc + tail + 4 * s.oc
        if not old:
            total += align(s.kw * s.c, 16) * s.kh * s.oc  # filter rows aligned to 16
            pad_r = max(0, s.ow * s.sw + s.kw - 1 - s.w)
            pad_b = max(0, s.oh * s.sh + s.kh - 1 - s.h)
            if pad_r or pad_b:
                total += (s.w + pad_r) * (s.h + pad_b) * s.c  # boundary copy of the input
        return total

    @staticmethod
    def _padded_3x3(s: ConvShape) -> tuple[int, int]:
        if s.ph or s.pw:
            return 2 * s.pw, 2 * s.ph
        return s.ow * s.sw + s.kw - 1 - s.w, s.oh * s.sh + s.kh - 1 - s.h

    def s3_depthwise(self, s: ConvShape) -> int:
        """esp_nn_get_depthwise_conv_scratch_size_esp32s3, esp-nn >= 1.2.1."""
        m, c = s.depth_multiplier, s.c
        fsize = s.kh * s.kw * c * m
        if m == 1 and c % 8 == 0:
            if (s.kh, s.kw) == (3, 3):
                if c % 16 == 0:
                    padw, padh = self._padded_3x3(s)
                    if padw or padh:
                        full = (s.w + padw) * (s.h + padh) * c
                        return fsize + (full if full <= 40 * 1024 else (s.w + padw) * s.kh * c) + 16
                    return fsize + 16
                if c >= 12:
                    c16 = align(c, 16)
                    padw = 2 * s.pw + max(0, s.ow * s.sw + 2 - s.w)
                    padh = 2 * s.ph + max(0, s.oh * s.sh + 2 - s.h)
                    return 9 * c16 + (s.w + padw) * (s.h + padh) * c16 + s.ow * s.oh * c16 + 64
                return 2 * (fsize + s.h * s.w * c) + 32
            total = 2 * (fsize + s.h * s.w * c)
            return total + 32 if total <= 48 * 1024 else 2 * fsize + 2 * s.w * s.kh * c + 32
        if m == 1 and c > 3:
            c8 = align(c, 8)
            input_start = align(s.kw * s.kh * c8 * 2, 16)
            out_start = align(input_start + s.h * s.w * c8 * 2, 16)
            return align(out_start + s.ow * s.oh * c8, 16) + 3 * c8 * 4 + 16
        if m % 4 == 0:
            return 2 * (fsize + s.h * s.w * c) + 32
        return 32

    def s3_depthwise_before_1_2_1(self, s: ConvShape) -> int:
        """The same for esp-nn 1.1.x and 1.2.0 (1.1.x asks 16 bytes less on its s16 paths)."""
        m, c = s.depth_multiplier, s.c
        fsize = s.kh * s.kw * c * m
        if m == 1 and c % 8 == 0 and (s.kh, s.kw) == (3, 3):
            if c % 16 == 0:
                padw, padh = self._padded_3x3(s)
                return fsize + ((s.w + padw) * (s.h + padh) * c if padw or padh else 0) + 16
            return 2 * (fsize + s.h * s.w * c) + 32
        if m % 4 == 0:
            return 2 * (fsize + s.h * s.w * c) + 32
        return 32


class CmsisNN(KernelFamily):
    name = "cmsis-nn"
    DSP_CORES = ("cortex-m4", "cortex-m4f", "cortex-m7", "cortex-m33")

    def scratch(self, op: Op, target: str) -> int:
        dsp = target in self.DSP_CORES
        if op.kind == "CONV_2D" and len(op.activation_in[0].shape) == 4:
            s = ConvShape.of(op)
            if (s.kh, s.kw, s.ph, s.pw, s.dh, s.dw) == (1, 1, 0, 0, 1, 1) and s.c == s.filter_c:
                return 0  # arm_convolve_1x1_s8(_fast) needs no buffer (GCC builds)
            return 4 * align(s.kh * s.kw * s.c, 4)  # im2col of one output column, as int16
        if op.kind == "DEPTHWISE_CONV_2D" and len(op.activation_in[0].shape) == 4 and dsp:
            s = ConvShape.of(op)
            if s.c == s.oc and s.n == 1 and (s.dh, s.dw) == (1, 1):
                if (s.kh, s.kw) == (3, 3) and s.ph <= 1 and s.pw <= 1:
                    return 0  # arm_depthwise_conv_3x3_s8
                return 2 * s.c * s.kh * s.kw
            return 0
        if op.kind == "FULLY_CONNECTED" and op.weights is not None:
            out_shape = op.outputs[0].shape
            if len(out_shape) > 2 and op.weights.shape[-1] % 4 == 0 and not op.weights.per_channel:
                return 8 * out_shape[-1]  # per-tensor weights: the kernel sums of the weights, int64
            return 0
        if op.kind == "AVERAGE_POOL_2D" and dsp:
            return 4 * op.outputs[0].shape[-1]
        return 0


FAMILIES: dict[str, KernelFamily] = {f.name: f for f in (Reference(), EspNN(), CmsisNN())}


@dataclass
class Scratch:
    """The extra scratch the board's kernels request: per op, and the largest (what the arena must add)."""
    kernels: str
    target: str
    per_op: list[int]  # bytes, each rounded up to 16 as TFLM plans them
    max_bytes: int
    max_op: int | None  # the op index of the largest request
    margin_bytes: int = 0  # what the arena keeps on top for this kernel family


def target_of(board: Board) -> str:
    """The name the kernel rules know the chip by: the ESP-IDF target, or the core."""
    return board.target or board.core


def scratch(graph: Graph, board: Board) -> Scratch:
    family = FAMILIES[board.kernels]
    target = target_of(board)
    per_op = [align(family.scratch(op, target), ALIGN) for op in graph.ops]
    largest = max(range(len(per_op)), key=per_op.__getitem__) if per_op else None
    max_bytes = per_op[largest] if largest is not None else 0
    return Scratch(family.name, target, per_op, max_bytes, largest if max_bytes else None, family.margin_bytes)
