/* The benchmark harness core: the MLPerf Tiny serial protocol (mlcommons/tiny benchmark/api), in C99,
 * independent of TFLM and of any board SDK. A port feeds it received characters and gives it a way to write
 * and a microsecond clock; a backend runs the model. See docs/serial-protocol.md. */
#ifndef EE_CORE_H_
#define EE_CORE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EE_CMD_SIZE 80u        /* longest command, as the reference firmware */
#define EE_CMD_TERMINATOR '%'
#define EE_EXT_VERSION 2       /* version of this firmware's x- extensions (2: xprofile) */
#ifndef EE_MAX_DB_BYTES
#define EE_MAX_DB_BYTES (96u * 96u * 3u) /* the reference MAX_DB_INPUT_SIZE: the largest MLPerf Tiny input */
#endif
#ifndef EE_MAX_OUTPUTS
#define EE_MAX_OUTPUTS 1024u
#endif

typedef struct {
  /* Writes len bytes to the serial port (blocking). */
  void (*write)(const char *text, size_t len);
  /* A free-running microsecond counter; it may wrap at 2^32. */
  uint32_t (*micros)(void);
  /* Where the figures come from, for the reader's labels: "device" (the board's own clock), "qemu-icount"
   * (QEMU with -icount: the clock counts instructions, 1 us = 1000 of them), "host" (a PC). */
  const char *platform;
} ee_port_t;

typedef struct {
  const char *kind;        /* "tflm", or "test" for the deterministic stand-in where TFLM cannot be built */
  const char *model_name;
  const char *model_hash;  /* identity of the model compiled in, so the host can spot stale firmware */
  size_t input_bytes;      /* the int8 input tensor's size */
  size_t output_count;     /* number of int8 outputs */
  float output_scale;
  int output_zero_point;
  uint32_t arena_size;     /* 0 where there is no arena */
  /* Copies the input into the model's input tensor; returns 0 on success. */
  int (*load)(const uint8_t *input, size_t len);
  /* Runs one inference on the loaded input; returns 0 on success. */
  int (*infer)(void);
  /* The raw int8 outputs of the last inference (output_count values). */
  const int8_t *(*outputs)(void);
  /* Arena bytes the runtime really uses (0 if unknown). */
  size_t (*arena_used)(void);
  /* Optional per-operator profile of the last inference (NULL where there is none): the number of operators
   * timed, and for operator i its name and its time in the port's microseconds. */
  size_t (*profile_count)(void);
  void (*profile)(size_t i, const char **op, uint32_t *us);
} ee_backend_t;

typedef struct {
  const ee_port_t *port;
  const ee_backend_t *backend;
  char cmd[EE_CMD_SIZE + 1];
  size_t cmd_len;
  int cmd_overflow;
  uint8_t db[EE_MAX_DB_BYTES];
  size_t db_size;   /* announced by db load; 0 before */
  size_t db_pos;    /* bytes received so far */
  int have_results;
} ee_ctx_t;

/* Prints the boot banner (timestamp mode, a timestamp, m-init-done, m-ready) and enables the parser. */
void ee_init(ee_ctx_t *ctx, const ee_port_t *port, const ee_backend_t *backend);
/* Feeds one received character; a complete command (ended by '%') is executed before this returns. */
void ee_feed(ee_ctx_t *ctx, char c);
/* Formats and writes one line (a "\r\n" is added). */
void ee_printf(ee_ctx_t *ctx, const char *fmt, ...);

#ifdef __cplusplus
}
#endif

#endif /* EE_CORE_H_ */
