#include "ee_core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EE_LINE_SIZE 160u
#define EE_MAX_FEATURE_CHANNELS 32u /* a frame's features on one xfeatures line: 4 hex digits each */
#ifndef EE_FW_NAME
#define EE_FW_NAME "mcu-deploy benchmark firmware 1.0"
#endif
#ifndef EE_VENDOR
#define EE_VENDOR "mcu-deploy"
#endif
/* 0: the MLPerf Tiny commands only, as MLCommons' own device code answers (every x- command is unknown), so the
 * reader's path for firmware without this project's extensions can be tested with the real core. */
#ifndef EE_EXTENSIONS
#define EE_EXTENSIONS 1
#endif

void ee_printf(ee_ctx_t *ctx, const char *fmt, ...) {
  char line[EE_LINE_SIZE];
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(line, sizeof(line) - 2, fmt, args);
  va_end(args);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof(line) - 2 ? (size_t)n : sizeof(line) - 3;
  line[len++] = '\r';
  line[len++] = '\n';
  ctx->port->write(line, len);
}

static void write_str(ee_ctx_t *ctx, const char *s) { ctx->port->write(s, strlen(s)); }

static void set_pin(ee_ctx_t *ctx, int level) {
  if (ctx->port->pin == NULL) return;
  ctx->port->pin(level);
  ++ctx->pin_edges;
}

/* Performance mode: the port's clock since boot, printed (it starts at 0 in ee_init; the MLCommons runner subtracts
 * two of them without a modulo). Energy mode: a low pulse of at least EE_PULSE_US on the timestamp pin, which the
 * power board records; nothing is printed, as in the reference firmware. */
static void timestamp(ee_ctx_t *ctx) {
  if (!ctx->port->energy_mode) {
    ee_printf(ctx, "m-lap-us-%lu", (unsigned long)(ctx->port->micros() - ctx->boot_us));
    return;
  }
  set_pin(ctx, 0);
  uint32_t start = ctx->port->micros();
  while (ctx->port->micros() - start <= EE_PULSE_US) {
  }
  set_pin(ctx, 1);
}

/* Fixed-point "%0.3f" without printf's float support (newlib-nano leaves it out). */
static size_t format_milli(char *out, float value) {
  long milli = (long)(value * 1000.0f + (value < 0 ? -0.5f : 0.5f));
  const char *sign = milli < 0 ? "-" : "";
  unsigned long m = (unsigned long)(milli < 0 ? -milli : milli);
  return (size_t)sprintf(out, "%s%lu.%03lu", sign, m / 1000u, m % 1000u);
}

static void print_results(ee_ctx_t *ctx) {
  const ee_backend_t *b = ctx->backend;
  const int8_t *raw = b->outputs();
  char value[24];
  write_str(ctx, "m-results-[");
  for (size_t i = 0; i < b->output_count; ++i) {
    size_t n = format_milli(value, (raw[i] - b->output_zero_point) * b->output_scale);
    if (i + 1 < b->output_count) value[n++] = ',';
    ctx->port->write(value, n);
  }
  write_str(ctx, "]\r\n");
}

static void print_raw(ee_ctx_t *ctx) {
  static const char hex[] = "0123456789abcdef";
  const int8_t *raw = ctx->backend->outputs();
  char pair[2];
  write_str(ctx, "m-x-raw-[");
  for (size_t i = 0; i < ctx->backend->output_count; ++i) {
    uint8_t byte = (uint8_t)raw[i];
    pair[0] = hex[byte >> 4];
    pair[1] = hex[byte & 15u];
    ctx->port->write(pair, 2);
  }
  write_str(ctx, "]\r\n");
}

/* What a reply may echo of the input: printable ASCII, anything else (and the closing ']') as '?'. */
static char printable(char c) { return (c < 0x20 || c > 0x7e || c == ']') ? '?' : c; }

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* A whole decimal number, or -1 (also for an empty, negative, non-numeric or absurdly large one). */
static long parse_count(const char *s) {
  if (s == NULL || *s == '\0') return -1;
  long value = 0;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9') return -1;
    value = value * 10 + (*s - '0');
    if (value > 100000000L) return -1;
  }
  return value;
}

static void cmd_db(ee_ctx_t *ctx, char *sub, char *arg, char *arg2) {
  if (sub == NULL) {
    ee_printf(ctx, "e-[Command 'db' requires a subcommand]");
  } else if (strcmp(sub, "load") == 0) {
    long n = parse_count(arg);
    if (arg == NULL) {
      ee_printf(ctx, "e-[Command 'db load' requires the # of bytes]");
    } else if (n <= 0) {
      ee_printf(ctx, "e-[Command 'db load' must be >0 bytes]");
    } else if ((size_t)n > EE_MAX_DB_BYTES) {
      ee_printf(ctx, "e-[Supplied buffer size %ld exceeds maximum of %u]", n, (unsigned)EE_MAX_DB_BYTES);
    } else {
      ctx->db_size = (size_t)n;
      ctx->db_pos = 0;
      ee_printf(ctx, "m-[Expecting %lu bytes]", (unsigned long)ctx->db_size);
    }
  } else if (strcmp(sub, "print") == 0) {  /* db print [N=16] [offset=0], within what was received */
    long n = arg ? parse_count(arg) : 16;
    long offset = arg2 ? parse_count(arg2) : 0;
    size_t start = offset < 0 ? 0u : (size_t)offset;
    if (start > ctx->db_pos) start = ctx->db_pos;
    size_t end = start + (n < 0 ? 16u : (size_t)n);
    if (end > ctx->db_pos || end < start) end = ctx->db_pos;
    for (size_t i = start; i < end; i += 8) {
      char line[8 * 3 + 16];
      size_t len = (size_t)sprintf(line, "m-buffer-");
      for (size_t j = i; j < i + 8 && j < end; ++j) {
        len += (size_t)sprintf(line + len, j + 1 < i + 8 && j + 1 < end ? "%02x-" : "%02x", ctx->db[j]);
      }
      ee_printf(ctx, "%s", line);
    }
  } else {
    size_t digits = strlen(sub);
    if (ctx->db_size == 0) {
      ee_printf(ctx, "e-[Command 'db' needs 'db load N' first]");
    } else if (digits % 2 != 0) {
      ee_printf(ctx, "e-[Insufficent number of hex digits]");
    } else if (ctx->db_pos + digits / 2 > ctx->db_size) {
      ee_printf(ctx, "e-[db overflows the announced %lu bytes]", (unsigned long)ctx->db_size);
    } else {
      for (size_t i = 0; i < digits; i += 2) {  /* check every digit before writing any byte */
        if (hex_value(sub[i]) < 0 || hex_value(sub[i + 1]) < 0) {
          ee_printf(ctx, "e-[Invalid hex digit '%c%c']", printable(sub[i]), printable(sub[i + 1]));
          return;
        }
      }
      for (size_t i = 0; i < digits; i += 2) {
        ctx->db[ctx->db_pos++] = (uint8_t)(hex_value(sub[i]) << 4 | hex_value(sub[i + 1]));
      }
      if (ctx->db_pos == ctx->db_size) ee_printf(ctx, "m-load-done");
    }
  }
}

static void cmd_infer(ee_ctx_t *ctx, char *count_arg, char *warmup_arg) {
  const ee_backend_t *b = ctx->backend;
  long n = count_arg ? parse_count(count_arg) : 1;
  long w = warmup_arg ? parse_count(warmup_arg) : 10;  /* the reference's default warm-up */
  if (n <= 0) {
    ee_printf(ctx, "e-[Inference iterations must be >0]");
    return;
  }
  if (w < 0) {
    ee_printf(ctx, "e-[Inference warmup must be >=0]");
    return;
  }
  if (ctx->db_size == 0 || ctx->db_pos != ctx->db_size) {
    ee_printf(ctx, "e-[Input not loaded: %lu of %lu bytes]", (unsigned long)ctx->db_pos,
              (unsigned long)ctx->db_size);
    return;
  }
  if (ctx->db_size != b->input_bytes) {
    ee_printf(ctx, "e-[Input has %lu bytes, model expects %lu]", (unsigned long)ctx->db_size,
              (unsigned long)b->input_bytes);
    return;
  }
  /* The input is loaded again before every inference: TFLM may reuse the input tensor's memory for
   * intermediate tensors, so a second inference on the same tensor would compute on a clobbered input. The
   * copy is inside the timed loop, as in the reference firmware's single load; it costs a memcpy of one
   * input, far below an inference. */
  ee_printf(ctx, "m-warmup-start-%ld", w);
  for (long i = 0; i < w; ++i) {
    if (b->load(ctx->db, ctx->db_size) != 0 || b->infer() != 0) {
      ee_printf(ctx, "e-[Inference failed]");
      return;
    }
  }
  ee_printf(ctx, "m-warmup-done");
  ee_printf(ctx, "m-infer-start-%ld", n);
  timestamp(ctx);
  /* Performance mode: the pin is high for the timed loop alone (the timestamps' printing stays outside it). */
  if (!ctx->port->energy_mode) set_pin(ctx, 1);
  int failed = 0;
  for (long i = 0; i < n && !failed; ++i) failed = b->load(ctx->db, ctx->db_size) != 0 || b->infer() != 0;
  if (!ctx->port->energy_mode) set_pin(ctx, 0);
  timestamp(ctx);
  if (failed) {
    ee_printf(ctx, "e-[Inference failed]");
    return;
  }
  ee_printf(ctx, "m-infer-done");
  ctx->have_results = 1;
  print_results(ctx);
}

/* Reflected CRC-32 (polynomial 0xEDB88320, as zlib's crc32), one byte at a time: no table in flash. */
static uint32_t crc32_byte(uint32_t crc, uint8_t byte) {
  crc ^= byte;
  for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  return crc;
}

static long parse_hex32(const char *s) {
  if (s == NULL || strlen(s) != 8) return -1;
  long value = 0;
  for (; *s; ++s) {
    int digit = hex_value(*s);
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

/* xdb LEN CRC: the next LEN bytes after the '%' are raw input bytes for db at db_pos; CRC is their CRC-32 as 8
 * hex digits. The reply (after the last byte) is m-x-db-ok-POS, or an error with nothing written. The bytes of a
 * refused frame are consumed all the same, so they are never read as commands. */
static int cmd_xdb(ee_ctx_t *ctx, char *len_arg, char *crc_arg) {
  long n = parse_count(len_arg);
  long crc = parse_hex32(crc_arg);
  if (n <= 0 || (size_t)n > EE_MAX_DB_BYTES) {
    ee_printf(ctx, "e-[Command 'xdb' needs a frame of 1 to %u bytes]", (unsigned)EE_MAX_DB_BYTES);
    return 0;
  }
  ctx->frame_active = 1;
  ctx->frame_len = (size_t)n;
  ctx->frame_got = 0;
  ctx->frame_crc = 0xFFFFFFFFu;
  ctx->frame_expected_crc = (uint32_t)crc;
  ctx->frame_last_us = ctx->port->micros();
  if (crc < 0) {
    ctx->frame_error = "e-[Command 'xdb' needs the CRC-32 as 8 hex digits]";
  } else if (ctx->db_size == 0) {
    ctx->frame_error = "e-[Command 'xdb' needs 'db load N' first]";
  } else if (ctx->db_pos + (size_t)n > ctx->db_size) {
    ctx->frame_error = "e-[xdb overflows the announced db size]";
  } else {
    ctx->frame_error = NULL;
  }
  return 1;  /* the reply comes after the frame */
}

static void frame_byte(ee_ctx_t *ctx, uint8_t byte) {
  if (ctx->frame_error == NULL) {
    ctx->db[ctx->db_pos + ctx->frame_got] = byte;  /* committed only if the checksum matches */
    ctx->frame_crc = crc32_byte(ctx->frame_crc, byte);
  }
  if (++ctx->frame_got < ctx->frame_len) return;
  ctx->frame_active = 0;
  if (ctx->frame_error) {
    ee_printf(ctx, "%s", ctx->frame_error);
  } else if ((ctx->frame_crc ^ 0xFFFFFFFFu) != ctx->frame_expected_crc) {
    ee_printf(ctx, "e-[xdb checksum mismatch: frame dropped, db at %lu]", (unsigned long)ctx->db_pos);
  } else {
    ctx->db_pos += ctx->frame_len;
    ee_printf(ctx, "m-x-db-ok-%lu", (unsigned long)ctx->db_pos);
    if (ctx->db_pos == ctx->db_size) ee_printf(ctx, "m-load-done");
  }
  ee_printf(ctx, "m-ready");
}

/* Microseconds from `since` to `now` on the port's clock, across its 2^32 wrap; a clock that stepped back (a port
 * whose millisecond count and sub-millisecond counter were read apart) gives 0, never a gap of 4.29e9 us. */
static uint32_t elapsed_us(uint32_t now, uint32_t since) {
  int32_t diff = (int32_t)(now - since);
  return diff < 0 ? 0u : (uint32_t)diff;
}

/* A frame whose next byte is late is dropped with its reply, so the host can resend it. */
static void frame_expire(ee_ctx_t *ctx, uint32_t now) {
  if (!ctx->frame_active || elapsed_us(now, ctx->frame_last_us) <= EE_FRAME_TIMEOUT_US) return;
  ctx->frame_active = 0;
  ee_printf(ctx, "e-[xdb frame timed out after %lu of %lu bytes: dropped, db at %lu]",
            (unsigned long)ctx->frame_got, (unsigned long)ctx->frame_len, (unsigned long)ctx->db_pos);
  ee_printf(ctx, "m-ready");
}

static void baud_revert(ee_ctx_t *ctx) {
  uint32_t tried = ctx->baud;
  ctx->baud_pending = 0;
  ctx->baud = ctx->baud_old;
  ctx->port->set_baud(ctx->baud_old);
  ctx->cmd_len = 0;  /* what arrived at the wrong rate is noise */
  ctx->cmd_overflow = 0;
  ee_printf(ctx, "e-[xbaud: %lu not confirmed, back at %lu baud]", (unsigned long)tried, (unsigned long)ctx->baud);
}

static void baud_expire(ee_ctx_t *ctx, uint32_t now) {
  if (!ctx->baud_pending || elapsed_us(now, ctx->baud_since) <= EE_BAUD_CONFIRM_US) return;
  baud_revert(ctx);
  ee_printf(ctx, "m-ready");
  ++ctx->unsolicited;
}

/* xbaud RATE: replies at the current rate, then switches; the host must send xbaudok at the new rate within
 * EE_BAUD_CONFIRM_US, or the port goes back to the old rate by itself. */
static void cmd_xbaud(ee_ctx_t *ctx, char *rate_arg) {
  long rate = parse_count(rate_arg);
  if (ctx->port->set_baud == NULL) {
    ee_printf(ctx, "e-[xbaud: this port cannot change its baud rate]");
  } else if (rate < 1200 || rate > 16000000L) {
    ee_printf(ctx, "e-[xbaud: rate must be 1200 to 16000000]");
  } else {
    ee_printf(ctx, "m-x-baud-%ld", rate);
    ee_printf(ctx, "m-ready");
    if (ctx->port->set_baud((uint32_t)rate) == 0) {
      ctx->baud_old = ctx->baud;
      ctx->baud = (uint32_t)rate;
      ctx->baud_pending = 1;
      ctx->baud_since = ctx->port->micros();
    }
    return;
  }
  ee_printf(ctx, "m-ready");
}

/* Echoes at most 40 characters, non-printable ones as '?', so a reply line is always plain ASCII. */
static void unknown_command(ee_ctx_t *ctx, char *tok) {
  size_t n = 0;
  for (; tok[n] && n < 40; ++n) tok[n] = printable(tok[n]);
  tok[n] = '\0';
  ee_printf(ctx, "e-[Unknown command: %s]", tok);
}

static void cmd_help(ee_ctx_t *ctx) {
  static const char *const lines[] = {
      EE_FW_NAME,
      "help         : Print this information",
      "name         : Print the name of the device",
      "timestamp    : Generate a timestamp",
      "db SUBCMD    : Manipulate a generic byte buffer",
      "  load N     : Allocate N bytes and set load counter",
      "  db HH[HH]* : Load 8-bit hex byte(s) until N bytes",
      "  print [N=16] [offset=0]",
      "             : Print N bytes at offset as hex",
      "infer N [W=10]: Load input, execute N inferences after W warmup loops",
      "results      : Return the result fp32 vector",
#if EE_EXTENSIONS
      "xinfo        : (extension) model hash, backend, sizes, arena",
      "xraw         : (extension) raw int8 outputs of the last inference, hex",
      "xprofile     : (extension) time of each operator in the last inference, us",
      "xdb LEN CRC  : (extension) the next LEN raw bytes go to db; CRC: their CRC-32, 8 hex digits",
      "xbaud RATE   : (extension) switch the baud rate; confirm with xbaudok at the new rate within 1 s",
      "xaudio [reset]: (extension) run db's 16-bit PCM through the audio front end (reset: fresh state)",
      "xfeatures    : (extension) print the front end's features and load them as the model input",
#endif
  };
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); ++i) ee_printf(ctx, "%s", lines[i]);
}

static void cmd_xinfo(ee_ctx_t *ctx) {
  const ee_backend_t *b = ctx->backend;
  ee_printf(ctx, "m-x-version-%d", EE_EXT_VERSION);
  ee_printf(ctx, "m-x-backend-[%s]", b->kind);
  ee_printf(ctx, "m-x-platform-[%s]", ctx->port->platform ? ctx->port->platform : "device");
  ee_printf(ctx, "m-x-model-[%s]", b->model_name);
  ee_printf(ctx, "m-x-model-hash-[%s]", b->model_hash);
  ee_printf(ctx, "m-x-input-bytes-%lu", (unsigned long)b->input_bytes);
  ee_printf(ctx, "m-x-output-count-%lu", (unsigned long)b->output_count);
  ee_printf(ctx, "m-x-arena-size-%lu", (unsigned long)b->arena_size);
  ee_printf(ctx, "m-x-arena-used-%lu", (unsigned long)(b->arena_used ? b->arena_used() : 0));
  ee_printf(ctx, "m-x-max-db-bytes-%lu", (unsigned long)EE_MAX_DB_BYTES);
  ee_printf(ctx, "m-x-baud-%lu", (unsigned long)ctx->baud);
  ee_printf(ctx, "m-x-baud-switch-%d", ctx->port->set_baud != NULL);
  ee_printf(ctx, "m-x-timestamp-pin-%d", ctx->port->pin != NULL);
  ee_printf(ctx, "m-x-pin-edges-%lu", ctx->pin_edges);
  ee_printf(ctx, "m-x-mode-[%s]", ctx->port->energy_mode ? "energy" : "performance");
  ee_printf(ctx, "m-x-audio-frontend-%d", ctx->backend->fe_process != NULL);
  /* where the next db byte goes: after a lost reply, the host asks before it sends the frame again */
  ee_printf(ctx, "m-x-db-pos-%lu", (unsigned long)ctx->db_pos);
}

/* Per-operator time of the last inference, from the backend's profiler (the port's microsecond clock). */
static void cmd_xprofile(ee_ctx_t *ctx) {
  const ee_backend_t *b = ctx->backend;
  if (b->profile == NULL) {
    ee_printf(ctx, "e-[xprofile: this backend has no profiler]");
    return;
  }
  if (!ctx->have_results) {
    ee_printf(ctx, "e-[No results: run infer first]");
    return;
  }
  size_t count = b->profile_count();
  for (size_t i = 0; i < count; ++i) {
    const char *op = NULL;
    uint32_t us = 0;
    b->profile(i, &op, &us);
    char name[33];
    size_t n = 0;
    for (; op && op[n] && n < sizeof(name) - 1; ++n) name[n] = printable(op[n]) == ',' ? '?' : printable(op[n]);
    name[n] = '\0';
    ee_printf(ctx, "m-x-profile-[%lu,%s,%lu]", (unsigned long)i, name, (unsigned long)us);
  }
  ee_printf(ctx, "m-x-profile-count-%lu", (unsigned long)count);
}

/* The audio front end (extension "audio"): xaudio feeds db's 16-bit PCM through the port's front end one stride
 * at a time and pools the frames into ctx->features; xfeatures prints them and loads them as the model input. */
static int audio_ready(ee_ctx_t *ctx, const char *cmd) {
  const ee_backend_t *b = ctx->backend;
  if (b->fe_process == NULL || b->fe_reset == NULL) {
    ee_printf(ctx, "e-[%s: this firmware has no audio front end]", cmd);
    return 0;
  }
  if (b->fe_stride_samples == 0 || b->fe_mel_channels == 0 || b->fe_mel_channels > EE_MAX_MEL_CHANNELS ||
      b->fe_channel_group == 0 || b->fe_mel_channels % b->fe_channel_group || b->fe_frame_step == 0 ||
      b->fe_mel_channels / b->fe_channel_group > EE_MAX_FEATURE_CHANNELS ||
      (size_t)b->fe_frames * (b->fe_mel_channels / b->fe_channel_group) > EE_MAX_FEATURES) {
    ee_printf(ctx, "e-[%s: the front end's settings do not fit this firmware]", cmd);
    return 0;
  }
  return 1;
}

static void cmd_xaudio(ee_ctx_t *ctx, const char *sub) {
  const ee_backend_t *b = ctx->backend;
  if (!audio_ready(ctx, "xaudio")) return;
  if (sub != NULL && strcmp(sub, "reset") == 0) {
    b->fe_reset();
    ctx->fe_raw_frames = ctx->fe_kept = ctx->fe_samples = 0;
    ee_printf(ctx, "m-x-audio-reset");
    return;
  }
  size_t stride_bytes = (size_t)b->fe_stride_samples * 2u;
  if (ctx->db_pos == 0 || ctx->db_pos % stride_bytes) {
    ee_printf(ctx, "e-[xaudio: db holds %lu bytes, not a whole number of %lu-byte strides of 16-bit PCM]",
              (unsigned long)ctx->db_pos, (unsigned long)stride_bytes);
    return;
  }
  uint32_t channels = b->fe_mel_channels / b->fe_channel_group;
  int16_t samples[512];
  uint16_t frame[EE_MAX_MEL_CHANNELS];
  if (b->fe_stride_samples > sizeof(samples) / sizeof(samples[0])) {
    ee_printf(ctx, "e-[xaudio: a stride of %lu samples is longer than this firmware takes]",
              (unsigned long)b->fe_stride_samples);
    return;
  }
  uint32_t t0 = ctx->port->micros(), busy = 0;
  for (size_t pos = 0; pos < ctx->db_pos; pos += stride_bytes) {
    for (uint32_t i = 0; i < b->fe_stride_samples; ++i)  /* little-endian, whatever the core's byte order */
      samples[i] = (int16_t)(uint16_t)(ctx->db[pos + 2u * i] | (uint16_t)ctx->db[pos + 2u * i + 1u] << 8);
    int got = b->fe_process(samples, b->fe_stride_samples, frame);
    ctx->fe_samples += b->fe_stride_samples;
    if (got < 0) {
      ee_printf(ctx, "e-[xaudio: the front end failed at sample %lu]", (unsigned long)ctx->fe_samples);
      return;
    }
    if (got == 0) continue;
    if (ctx->fe_raw_frames++ % b->fe_frame_step || ctx->fe_kept >= b->fe_frames) continue;
    uint16_t *out = ctx->features + (size_t)ctx->fe_kept++ * channels;
    for (uint32_t c = 0; c < channels; ++c) {
      uint32_t sum = 0;
      for (uint32_t g = 0; g < b->fe_channel_group; ++g) sum += frame[c * b->fe_channel_group + g];
      out[c] = (uint16_t)((sum + b->fe_channel_group / 2u) / b->fe_channel_group);
    }
  }
  busy = ctx->port->micros() - t0;
  ee_printf(ctx, "m-x-audio-samples-%lu", (unsigned long)ctx->fe_samples);
  ee_printf(ctx, "m-x-audio-frames-%lu", (unsigned long)ctx->fe_kept);
  ee_printf(ctx, "m-x-audio-us-%lu", (unsigned long)busy);
}

static void cmd_xfeatures(ee_ctx_t *ctx) {
  const ee_backend_t *b = ctx->backend;
  if (!audio_ready(ctx, "xfeatures")) return;
  uint32_t channels = b->fe_mel_channels / b->fe_channel_group;
  size_t count = (size_t)b->fe_frames * channels;
  if (ctx->fe_kept < b->fe_frames) {
    ee_printf(ctx, "e-[xfeatures: %lu of %lu frames so far: send more audio with xaudio]",
              (unsigned long)ctx->fe_kept, (unsigned long)b->fe_frames);
    return;
  }
  if (count != b->input_bytes || b->input_scale <= 0.0f) {
    ee_printf(ctx, "e-[xfeatures: %lu features do not make the model's %lu-byte input]", (unsigned long)count,
              (unsigned long)b->input_bytes);
    return;
  }
  for (uint32_t f = 0; f < b->fe_frames; ++f) {  /* one line a frame: uint16 values, 4 hex digits each */
    char hex[4 * EE_MAX_FEATURE_CHANNELS + 1];
    size_t n = 0;
    for (uint32_t c = 0; c < channels; ++c) n += (size_t)sprintf(hex + n, "%04x", ctx->features[f * channels + c]);
    ee_printf(ctx, "m-x-features-[%lu,%s]", (unsigned long)f, hex);
  }
  int8_t *input = (int8_t *)ctx->db;  /* db is free again: the audio is consumed */
  for (size_t i = 0; i < count; ++i) {
    float v = (float)ctx->features[i] * b->fe_feature_scale / b->input_scale;
    long q = (long)(v + 0.5f) + b->input_zero_point;  /* features are never negative */
    input[i] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
  }
  ctx->db_size = ctx->db_pos = count;  /* infer runs on this input, as after a db upload */
  ee_printf(ctx, "m-x-features-count-%lu", (unsigned long)count);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* The next space-separated word at *cursor (terminated in place), or NULL at the end of the line. */
static char *next_token(char **cursor) {
  char *p = *cursor;
  while (*p && is_space(*p)) ++p;
  if (*p == '\0') {
    *cursor = p;
    return NULL;
  }
  char *start = p;
  while (*p && !is_space(*p)) ++p;
  if (*p) *p++ = '\0';
  *cursor = p;
  return start;
}

static void execute(ee_ctx_t *ctx, char *line) {
  char *cursor = line;
  char *tok = next_token(&cursor);
  if (ctx->baud_pending) {
    if (tok != NULL && strcmp(tok, "xbaudok") == 0) {
      ctx->baud_pending = 0;
    } else {  /* anything else at the new rate: the host did not follow, go back */
      baud_revert(ctx);
      ee_printf(ctx, "m-ready");
      return;
    }
  }
  if (tok == NULL) {
    ee_printf(ctx, "e-[Empty command]");
  } else if (!EE_EXTENSIONS && tok[0] == 'x') {
    unknown_command(ctx, tok);
  } else if (strcmp(tok, "name") == 0) {
    ee_printf(ctx, "m-name-dut-[%s]", EE_VENDOR);
  } else if (strcmp(tok, "timestamp") == 0) {
    timestamp(ctx);
  } else if (strcmp(tok, "profile") == 0) {
    ee_printf(ctx, "m-profile-[%s]", EE_FW_NAME);
    ee_printf(ctx, "m-model-[%s]", ctx->backend->model_id ? ctx->backend->model_id : ctx->backend->model_name);
  } else if (strcmp(tok, "help") == 0) {
    cmd_help(ctx);
  } else if (strcmp(tok, "db") == 0) {
    char *sub = next_token(&cursor);
    char *arg = next_token(&cursor);
    cmd_db(ctx, sub, arg, next_token(&cursor));
  } else if (strcmp(tok, "infer") == 0) {
    char *n = next_token(&cursor);
    cmd_infer(ctx, n, next_token(&cursor));
  } else if (strcmp(tok, "results") == 0 || strcmp(tok, "xraw") == 0) {
    if (!ctx->have_results) {
      ee_printf(ctx, "e-[No results: run infer first]");
    } else if (tok[0] == 'r') {
      print_results(ctx);
    } else {
      print_raw(ctx);
    }
  } else if (strcmp(tok, "xinfo") == 0) {
    cmd_xinfo(ctx);
  } else if (strcmp(tok, "xprofile") == 0) {
    cmd_xprofile(ctx);
  } else if (strcmp(tok, "xaudio") == 0) {
    cmd_xaudio(ctx, next_token(&cursor));
  } else if (strcmp(tok, "xfeatures") == 0) {
    cmd_xfeatures(ctx);
  } else if (strcmp(tok, "xdb") == 0) {
    char *len_arg = next_token(&cursor);
    if (cmd_xdb(ctx, len_arg, next_token(&cursor))) return;  /* m-ready after the frame's bytes */
  } else if (strcmp(tok, "xbaud") == 0) {
    cmd_xbaud(ctx, next_token(&cursor));
    return;
  } else if (strcmp(tok, "xbaudok") == 0) {
    ee_printf(ctx, "m-x-baud-ok-%lu", (unsigned long)ctx->baud);
  } else {
    unknown_command(ctx, tok);
  }
  ee_printf(ctx, "m-ready");
}

void ee_tick(ee_ctx_t *ctx) {
  uint32_t now = ctx->port->micros();
  frame_expire(ctx, now);
  baud_expire(ctx, now);
}

int ee_in_frame(const ee_ctx_t *ctx) { return ctx->frame_active; }

void ee_feed(ee_ctx_t *ctx, char c) {
  if (ctx->frame_active || ctx->baud_pending) {
    uint32_t now = ctx->port->micros();
    frame_expire(ctx, now);
    baud_expire(ctx, now);
    if (ctx->frame_active) {
      ctx->frame_last_us = now;
      frame_byte(ctx, (uint8_t)c);
      return;
    }
  }
  if (c == EE_CMD_TERMINATOR) {
    ctx->cmd[ctx->cmd_len] = '\0';
    if (ctx->cmd_overflow) {
      ee_printf(ctx, "e-[Command too long: at most %u characters]", (unsigned)EE_CMD_SIZE);
      ee_printf(ctx, "m-ready");
    } else {
      execute(ctx, ctx->cmd);
    }
    ctx->cmd_len = 0;
    ctx->cmd_overflow = 0;
  } else if (ctx->cmd_len < EE_CMD_SIZE) {
    ctx->cmd[ctx->cmd_len++] = c;
  } else {
    ctx->cmd_overflow = 1;  /* drop the rest; the whole command is refused at its terminator */
  }
}

void ee_init(ee_ctx_t *ctx, const ee_port_t *port, const ee_backend_t *backend) {
  memset(ctx, 0, sizeof(*ctx));
  ctx->port = port;
  ctx->backend = backend;
  ctx->baud = port->baud;
  ctx->boot_us = port->micros();
  set_pin(ctx, port->energy_mode ? 1 : 0);  /* idle: high between energy-mode pulses, low outside a timed loop */
  ctx->pin_edges = 0;
  ee_printf(ctx, port->energy_mode ? "m-timestamp-mode-energy" : "m-timestamp-mode-performance");
  timestamp(ctx);
  ee_printf(ctx, "m-init-done");
  ee_printf(ctx, "m-ready");
}
