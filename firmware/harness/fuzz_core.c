/* Fuzzes the harness core, meant to be built with -fsanitize=address,undefined (pipeline/hil/harness_build.py).
 *
 *   fuzz_core SEED CASES     random protocol-shaped inputs from a seed
 *   fuzz_core -              one input from stdin (to replay a failure)
 *
 * Checks, beyond what the sanitizers catch: every '%' that ends a command gets exactly one "m-ready" (a '%' inside
 * an xdb frame's data ends none; a baud switch that times out adds one of its own), every reply line is printable
 * ASCII ending in "\r\n", the buffer positions never pass their bounds, and nothing times out (an xdb frame, a baud
 * switch) in a case without a long pause, even where the clock steps back. Exits 1 on a violated invariant. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ee_core.h"
#include "test_backend.h"

static char line[4096];
static size_t line_len;
static long ready_count;
static long timeout_lines;  /* "xdb frame timed out" replies */
static int bad_line;

static void check_write(const char *text, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    if (text[i] == '\n') {
      int printable = line_len >= 1 && line[line_len - 1] == '\r';
      for (size_t j = 0; printable && j + 1 < line_len; ++j) printable = line[j] >= 0x20 && line[j] <= 0x7e;
      if (!printable) {
        bad_line = 1;
        fprintf(stderr, "bad reply line: %.*s\n", (int)line_len, line);
      }
      if (line_len == 8 && strncmp(line, "m-ready\r", 8) == 0) ++ready_count;
      if (line_len < sizeof(line)) {
        line[line_len] = '\0';
        if (strstr(line, "timed out")) ++timeout_lines;
      }
      line_len = 0;
    } else if (line_len + 1 < sizeof(line)) {
      line[line_len++] = text[i];
    }
  }
}

static uint32_t clock_jump;  /* set by the case generator: the next clock reading leaps ahead (a pause on the line) */
static uint32_t clock_back;  /* ... or steps back (a port clock read around its reload, as QEMU's SysTick was) */
static uint32_t fake_micros(void) {
  static uint32_t t = 0xFFFFFF00u;  /* starts near the wrap, so wrapping stamps are exercised */
  t += 7 + clock_jump - clock_back;
  clock_jump = clock_back = 0;
  return t;
}

static int fake_set_baud(uint32_t baud) { return baud == 4800u ? -1 : 0; } /* one rate the "UART" refuses */

static uint64_t rng_state;
static uint32_t next(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)rng_state;
}

static const char *const words[] = {
    "db", "load", "print", "infer", "results", "xraw", "xinfo", "xprofile", "name", "profile", "help",
    "timestamp", "zz", "xdb", "xbaud", "xbaudok",
};
static const unsigned sizes[] = {0, 1, 4, 15, 16, 17, 31, 27648, 27649, 4294967295u};

/* zlib's CRC-32, as the host computes it for a frame (the core has its own). */
static unsigned crc32(const char *data, size_t len) {
  unsigned crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < len; ++i) {
    crc ^= (unsigned char)data[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xFFFFFFFFu;
}

static size_t append(char *buf, size_t len, size_t cap, const char *text, size_t n) {
  if (n > cap - len) n = cap - len;
  memcpy(buf + len, text, n);
  return len + n;
}

/* One command: mostly well-formed with boundary or random arguments, sometimes mutated or plain garbage. */
static size_t make_command(char *out) {
  size_t n = 0;
  switch (next() % 11) {
    case 0: n = (size_t)sprintf(out, "db load %u", sizes[next() % 10]); break;
    case 1: case 2: {  /* db + hex: right length, odd, over-long, with a bad digit */
      size_t digits = next() % 4 == 0 ? next() % 200 : 2 * (next() % 40);
      n = (size_t)sprintf(out, "db ");
      for (size_t i = 0; i < digits && n < 250; ++i) out[n++] = "0123456789abcdefABCDEF"[next() % 22];
      if (digits && next() % 5 == 0) out[3 + next() % digits] = "g -%"[next() % 4];
      break;
    }
    case 3: n = (size_t)sprintf(out, "db print %u %u", sizes[next() % 10], sizes[next() % 10]); break;
    case 4: n = (size_t)sprintf(out, "infer %d %d", (int)(next() % 5) - 1, (int)(next() % 4) - 1); break;
    case 5: n = (size_t)sprintf(out, "%s", words[next() % (sizeof(words) / sizeof(words[0]))]); break;
    case 6: n = (size_t)sprintf(out, "%s %s", words[next() % 12], words[next() % 12]); break;
    case 7: {  /* raw bytes, NUL and high bit included */
      n = next() % 120;
      for (size_t i = 0; i < n; ++i) out[i] = (char)(next() & 0xFF);
      break;
    }
    case 8: {  /* an xdb frame: right, wrong or missing CRC, short or long data, '%' and NUL inside */
      size_t len = next() % 4 == 0 ? sizes[next() % 10] : 1 + next() % 40;
      char data[64];
      size_t have = next() % 3 ? len : next() % 60;
      if (have > sizeof(data)) have = sizeof(data);
      for (size_t i = 0; i < have; ++i) data[i] = "\0%ab\xff"[next() % 5];
      unsigned crc = next() % 2 ? crc32(data, have < len ? have : len) : next();  /* half of them right */
      n = (size_t)sprintf(out, next() % 6 ? "xdb %u %08x" : "xdb %u zz", (unsigned)len, crc);
      out[n++] = '%';
      memcpy(out + n, data, have);
      n += have;
      break;
    }
    case 9: n = (size_t)sprintf(out, "xbaud %u", next() % 3 ? 921600u : (next() % 2 ? 4800u : sizes[next() % 10])); break;
    default: n = 0; break;  /* an empty command */
  }
  return n;
}

static size_t make_case(char *buf, size_t cap) {
  char command[300];
  size_t len = 0, commands = 1 + next() % 30;
  for (size_t c = 0; c < commands && len < cap; ++c) {
    len = append(buf, len, cap, command, make_command(command));
    if (next() % 16 == 0 && len < cap) buf[len++] = '\x01';  /* marks a long pause before the next byte */
    if (next() % 8 == 0 && len < cap) buf[len++] = '\x02';   /* marks a clock stepping back 999 us */
    if (next() % 10 != 0) len = append(buf, len, cap, "%", 1);  /* sometimes two commands run together */
  }
  return len;
}

/* The timestamp pin: every write must change the level (edges alternate), and a case must end at the idle level. */
static int pin_level = -1, pin_bad = 0;
static void fake_pin(int level) {
  if (level == pin_level) pin_bad = 1;
  pin_level = level;
}

static int run_case(const char *input, size_t len) {
  static ee_ctx_t ctx;
  static const ee_port_t performance = {check_write, fake_micros, "host", fake_set_baud, 115200u, fake_pin, 0};
  static const ee_port_t energy = {check_write, fake_micros, "host", fake_set_baud, 9600u, fake_pin, 1};
  const ee_port_t *port_used = next() % 2 ? &energy : &performance;
  pin_level = -1;
  pin_bad = 0;
  line_len = 0;
  ready_count = 0;
  timeout_lines = 0;
  bad_line = 0;
  int paused = 0;
  ee_test_backend_clock(next() % 2 ? fake_micros : NULL);  /* with and without a profiler */
  ee_init(&ctx, port_used, ee_test_backend(16, 12, "fuzz", "0", 1));
  long terminators = 1;  /* the boot banner ends with one m-ready */
  for (size_t i = 0; i < len; ++i) {
    if (input[i] == '\x01') clock_jump = 2000000u;  /* beyond the frame and baud time-outs */
    if (input[i] == '\x02') clock_back = 999u;
    paused |= input[i] == '\x01';
    if (next() % 64 == 0) ee_tick(&ctx);
    if (input[i] == EE_CMD_TERMINATOR && !ee_in_frame(&ctx)) ++terminators;
    ee_feed(&ctx, input[i]);
    if (ctx.db_pos > ctx.db_size || ctx.db_size > EE_MAX_DB_BYTES || ctx.cmd_len > EE_CMD_SIZE) {
      fprintf(stderr, "buffer bounds violated\n");
      return 1;
    }
  }
  ee_tick(&ctx);
  terminators += (long)ctx.unsolicited - ee_in_frame(&ctx);  /* an unfinished frame has not replied yet */
  if (ready_count != terminators) {
    fprintf(stderr, "%ld commands but %ld m-ready\n", terminators, ready_count);
    return 1;
  }
  if ((timeout_lines || ctx.unsolicited) && !paused) {  /* a baud switch that timed out adds an unsolicited m-ready */
    fprintf(stderr, "%ld time-outs without a pause on the line (a clock step back read as a long gap?)\n",
            timeout_lines + (long)ctx.unsolicited);
    return 1;
  }
  if (pin_bad || pin_level != port_used->energy_mode) {
    fprintf(stderr, "timestamp pin: a repeated level or not idle (%d) at the end\n", pin_level);
    return 1;
  }
  return bad_line;
}

int main(int argc, char **argv) {
  static char buf[1 << 16];
  if (argc == 2 && strcmp(argv[1], "-") == 0) {
    size_t len = fread(buf, 1, sizeof(buf), stdin);
    return run_case(buf, len);
  }
  if (argc != 3) {
    fprintf(stderr, "usage: fuzz_core SEED CASES | fuzz_core -\n");
    return 2;
  }
  rng_state = strtoull(argv[1], NULL, 10) * 2654435761u + 1;
  long cases = strtol(argv[2], NULL, 10);
  for (long c = 0; c < cases; ++c) {
    size_t len = make_case(buf, sizeof(buf));
    if (run_case(buf, len)) {
      fprintf(stderr, "case %ld of seed %s failed; input written to fuzz_failure.bin\n", c, argv[1]);
      FILE *f = fopen("fuzz_failure.bin", "wb");
      if (f) {
        fwrite(buf, 1, len, f);
        fclose(f);
      }
      return 1;
    }
  }
  printf("%ld cases passed\n", cases);
  return 0;
}
