/* The benchmark harness core: the MLPerf Tiny serial protocol (mlcommons/tiny benchmark/api), in C99,
 * independent of TFLM and of any board SDK. A port feeds it received characters and gives it a way to write
 * and a microsecond clock; a backend runs the model. See docs/serial-protocol.md. */
#ifndef EE_CORE_H_
#define EE_CORE_H_

#include <stddef.h>
#include <stdint.h>

/* A port whose build cannot pass -D flags (an Arduino sketch) sets the sizes below in ee_config.h instead. */
#if defined(__has_include)
#if __has_include("ee_config.h")
#include "ee_config.h"
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define EE_CMD_SIZE 80u        /* longest command, as the reference firmware */
#define EE_CMD_TERMINATOR '%'
#define EE_EXT_VERSION 3       /* version of this firmware's x- extensions (2: xprofile, 3: xdb frames, xbaud) */
#ifndef EE_MAX_DB_BYTES
#define EE_MAX_DB_BYTES (96u * 96u * 3u) /* the reference MAX_DB_INPUT_SIZE: the largest MLPerf Tiny input */
#endif
/* An xdb frame whose next byte is this late is dropped, so a frame cut short cannot swallow later commands. */
#ifndef EE_FRAME_TIMEOUT_US
#define EE_FRAME_TIMEOUT_US 500000u
#endif
/* After xbaud the host has this long to say xbaudok at the new rate; otherwise the port goes back to the old one. */
#ifndef EE_BAUD_CONFIRM_US
#define EE_BAUD_CONFIRM_US 1000000u
#endif
/* How long an energy-mode timestamp holds the pin low; the core waits 1 us more than this on the port's clock, whose
 * reading may be up to 1 us late. 100 us: the MLCommons runner finds a JS220's timestamps in the GPI0 level it
 * samples at 1 MHz (benchmark/runner/power_manager/power_manager_js220.py, raw_sampling_rate), where a 1 us pulse
 * can fall between two samples; MLPerf Tiny's reference firmware holds the pin low for a 100,000-iteration nop loop
 * (benchmark/reference_submissions, th_timestamp in submitter_implemented.cpp: milliseconds). 100 us is 100 JS220
 * samples and 0.001 % of the runner's minimum 10 s window. */
#ifndef EE_PULSE_US
#define EE_PULSE_US 100u
#endif
/* The mode a port built without a command-line switch starts in: 0 performance, 1 MLPerf Tiny energy mode. */
#ifndef EE_ENERGY_MODE
#define EE_ENERGY_MODE 0
#endif
#ifndef EE_MAX_OUTPUTS
#define EE_MAX_OUTPUTS 1024u
#endif
/* Audio front end (xaudio, xfeatures): the most feature values (frames x channels) one model input holds. */
#ifndef EE_MAX_FEATURES
#define EE_MAX_FEATURES 1024u
#endif
#ifndef EE_MAX_MEL_CHANNELS
#define EE_MAX_MEL_CHANNELS 64u
#endif

typedef struct {
  /* Writes len bytes to the serial port (blocking). */
  void (*write)(const char *text, size_t len);
  /* A free-running microsecond counter; it may wrap at 2^32 and must never step back (the core reads a step back
   * as no time passing, so a timeout is never taken early, but m-lap-us differences would be wrong). */
  uint32_t (*micros)(void);
  /* Where the figures come from, for the reader's labels: "device" (the board's own clock), "qemu-icount"
   * (QEMU with -icount: the clock counts instructions, 1 us = 1000 of them), "host" (a PC). */
  const char *platform;
  /* Optional (NULL: xbaud is refused): switches the console to `baud` once everything written so far has left the
   * port; returns 0 on success. Ports whose link has no baud rate (USB CDC, a pseudo-terminal) may leave it NULL. */
  int (*set_baud)(uint32_t baud);
  uint32_t baud;           /* the rate the console starts at (0 if it has none) */
  /* Optional (NULL: no pin): drives the timestamp GPIO, the pin the board file's [energy] timestamp_pin names
   * (1 high, 0 low). In performance mode it is high exactly while the timed loop of `infer` runs (the window a PPK2
   * or a logic analyser integrates over); in energy mode it idles high and each timestamp is a low pulse of at
   * least EE_PULSE_US, as MLPerf Tiny's power boards record them. */
  void (*pin)(int level);
  /* Non-zero: MLPerf Tiny energy mode (the DUT behind the interface board, timestamps on the pin, not printed). */
  int energy_mode;
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
  /* The id `profile` reports as m-model-[...] (MLPerf Tiny's runner picks its script by it: kws01, vww01, ic01,
   * ad01); NULL: model_name. */
  const char *model_id;
  /* Optional audio front end (NULL where the model takes no audio): the port's TFLM microfrontend, configured
   * with the generated kFrontend* settings (model_settings.h). fe_reset starts from a fresh state; fe_process
   * takes fe_stride_samples 16-bit samples and returns 1 with fe_mel_channels values in `frame` when a frame is
   * out, 0 when it needs more samples, negative on error. The core keeps every fe_frame_step-th frame, averages
   * each fe_channel_group adjacent channels in integers and quantizes value * fe_feature_scale to the input. */
  void (*fe_reset)(void);
  int (*fe_process)(const int16_t *samples, size_t n, uint16_t *frame);
  uint32_t fe_stride_samples, fe_mel_channels, fe_frame_step, fe_channel_group, fe_frames;
  float fe_feature_scale;
  float input_scale;
  int input_zero_point;
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
  /* xdb: a binary frame being received straight into db at db_pos */
  int frame_active;
  const char *frame_error; /* why the frame is refused (its bytes are still consumed), or NULL */
  size_t frame_len, frame_got;
  uint32_t frame_crc, frame_expected_crc, frame_last_us;
  /* xbaud: the rate now, and the one to go back to if the switch is not confirmed in time */
  uint32_t baud, baud_old, baud_since;
  int baud_pending;
  unsigned long unsolicited; /* m-ready lines written without a command (a timed-out baud switch) */
  uint32_t boot_us;  /* the port's clock at ee_init: m-lap-us counts from here, so it starts at 0 at boot */
  unsigned long pin_edges;  /* timestamp pin level changes driven so far */
  /* xaudio: the front end's pooled features so far, raw frames seen, samples taken */
  uint16_t features[EE_MAX_FEATURES];
  uint32_t fe_raw_frames, fe_kept, fe_samples;
} ee_ctx_t;

/* Prints the boot banner (timestamp mode, a timestamp, m-init-done, m-ready), sets the timestamp pin to its idle
 * level and enables the parser. */
void ee_init(ee_ctx_t *ctx, const ee_port_t *port, const ee_backend_t *backend);
/* Feeds one received character; a complete command (ended by '%') is executed before this returns. */
void ee_feed(ee_ctx_t *ctx, char c);
/* Optional: a port calls this when nothing arrived for a while (every few ms), so a frame cut short or an
 * unconfirmed baud switch is dealt with without waiting for the next byte. */
void ee_tick(ee_ctx_t *ctx);
/* Non-zero while the bytes fed are frame data rather than command text (a '%' there ends no command). */
int ee_in_frame(const ee_ctx_t *ctx);
/* Formats and writes one line (a "\r\n" is added). */
void ee_printf(ee_ctx_t *ctx, const char *fmt, ...);

#ifdef __cplusplus
}
#endif

#endif /* EE_CORE_H_ */
