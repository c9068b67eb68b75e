/* Host (POSIX) port: the harness core on a pseudo-terminal, for tests and rigs without hardware.
 *
 *   ee_host [--input-bytes N] [--outputs N] [--model NAME] [--hash HEX] [--work N] [--pin FILE] [--energy-mode]
 *           [--garbage] [--reset-after N] [--silent-after N] [--bad-baud] [--clock-back-us N]
 *
 * --pin FILE is the virtual timestamp pin: every level the core drives is appended to FILE as a line
 * "<CLOCK_MONOTONIC ns> <0|1>", written at once, so another process on the same machine (the stand-in PPK2 of the
 * tests, a logic-analyser stand-in) can tell the pin's level at any moment. --energy-mode starts the harness in
 * MLPerf Tiny's energy mode (m-timestamp-mode-energy; timestamps are low pulses on the pin).
 *
 * Prints "pty: /dev/pts/N" on stdout, then serves the protocol on that terminal until killed.
 * Built with -DEE_BACKEND_TFLM (and linked with a TFLM library, the generated model files and
 * common/{model_runner,tflm_backend}.cc) it runs the real model instead of the test backend; the size and
 * model options are then ignored.
 * The fault switches make the device misbehave on purpose, for the reader's fault tests: --garbage writes
 * noise and a partial line between replies, --reset-after N reboots (banner again) on the Nth command,
 * --silent-after N stops answering from the Nth command on, --bad-baud garbles every byte received while the rate
 * differs from the one it started at (as a link whose two ends disagree on the rate), so xbaud must fall back,
 * --clock-back-us N makes every other clock reading N us behind the one before it (a clock that is not monotonic,
 * as a port reading its millisecond count and its sub-millisecond counter apart), for the core's timeouts. */
#define _DEFAULT_SOURCE  /* cfmakeraw */
#define _XOPEN_SOURCE 600
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ee_core.h"
#include "test_backend.h"
#ifdef EE_BACKEND_TFLM
#include "tflm_backend.h"
#endif

static int master_fd = -1;
static int slave_fd = -1;
static int garbage = 0;
static int pin_fd = -1;

static void write_all(const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(master_fd, data, len);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return;
    }
    data += n;
    len -= (size_t)n;
  }
}

static void port_write(const char *text, size_t len) {
  static int at_line_start = 1;
  if (garbage && at_line_start && len > 0) {
    /* Between lines: junk bytes, then the start of a line cut short by the next reply. */
    static const char noise[] = "\x00\xff\xfe#noise\r\nm-lap";
    write_all(noise, sizeof(noise) - 1);
  }
  write_all(text, len);
  if (len > 0) at_line_start = text[len - 1] == '\n';
}

static uint32_t clock_back_us = 0;  /* --clock-back-us: a fault, off by default */

static uint64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Microseconds since the process started (as a board's timer counts from reset), so m-lap-us starts near 0 rather
 * than at the host's uptime, and wraps only after 71.6 minutes of running. */
static uint64_t start_ns;

static uint32_t port_micros(void) {
  static unsigned long readings = 0;
  static uint32_t previous = 0;
  uint32_t now = (uint32_t)((monotonic_ns() - start_ns) / 1000u);
  if (clock_back_us && ++readings % 2 == 0) now = previous - clock_back_us;
  previous = now;
  return now;
}

/* The virtual timestamp pin: one line per level driven, stamped with the host's monotonic clock. */
static void port_pin(int level) {
  char line[48];
  int n = snprintf(line, sizeof(line), "%llu %d\n", (unsigned long long)monotonic_ns(), level ? 1 : 0);
  if (n > 0 && write(pin_fd, line, (size_t)n) != n) {
    static const char warning[] = "warning: the virtual timestamp pin file could not be written\n";
    (void)!write(2, warning, sizeof(warning) - 1);
  }
}

/* A pseudo-terminal has no wire: the rate is recorded in its settings, as a UART driver would set it, and changes
 * nothing else. It lets the reader's baud switch run end to end. */
static int port_set_baud(uint32_t baud) {
  struct termios tio;
  speed_t speed = baud == 921600u ? B921600 : baud == 460800u ? B460800 : baud == 230400u ? B230400
                : baud == 115200u ? B115200 : baud == 57600u ? B57600 : baud == 9600u ? B9600 : 0;
  if (speed == 0 || tcgetattr(slave_fd, &tio) != 0) return -1;
  cfsetspeed(&tio, speed);
  return tcsetattr(slave_fd, TCSADRAIN, &tio);
}

static long arg_number(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "error: %s needs a value\n", argv[*i]);
    exit(2);
  }
  return strtol(argv[++*i], NULL, 10);
}

int main(int argc, char **argv) {
  size_t input_bytes = 64, outputs = 10;
  const char *model = "test", *hash = "0000000000000000";
  unsigned work = 1;
  long reset_after = -1, silent_after = -1;
  int bad_baud = 0, energy_mode = 0;
  const char *pin_path = NULL;
  start_ns = monotonic_ns();
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--input-bytes")) input_bytes = (size_t)arg_number(argc, argv, &i);
    else if (!strcmp(argv[i], "--outputs")) outputs = (size_t)arg_number(argc, argv, &i);
    else if (!strcmp(argv[i], "--work")) work = (unsigned)arg_number(argc, argv, &i);
    else if (!strcmp(argv[i], "--reset-after")) reset_after = arg_number(argc, argv, &i);
    else if (!strcmp(argv[i], "--silent-after")) silent_after = arg_number(argc, argv, &i);
    else if (!strcmp(argv[i], "--garbage")) garbage = 1;
    else if (!strcmp(argv[i], "--bad-baud")) bad_baud = 1;
    else if (!strcmp(argv[i], "--clock-back-us")) clock_back_us = (uint32_t)arg_number(argc, argv, &i);
    else if (!strcmp(argv[i], "--energy-mode")) energy_mode = 1;
    else if (!strcmp(argv[i], "--pin") && i + 1 < argc) pin_path = argv[++i];
    else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else if (!strcmp(argv[i], "--hash") && i + 1 < argc) hash = argv[++i];
    else {
      fprintf(stderr, "error: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (pin_path != NULL) {
    pin_fd = open(pin_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (pin_fd < 0) {
      fprintf(stderr, "error: cannot open the virtual timestamp pin %s: %s\n", pin_path, strerror(errno));
      return 2;
    }
  }
  master_fd = posix_openpt(O_RDWR | O_NOCTTY);
  if (master_fd < 0 || grantpt(master_fd) != 0 || unlockpt(master_fd) != 0) {
    perror("error: cannot create a pseudo-terminal");
    return 1;
  }
  const char *slave_name = ptsname(master_fd);
  /* Keep a raw slave open ourselves: no echo or line editing, and reads do not fail while no reader is attached. */
  slave_fd = open(slave_name, O_RDWR | O_NOCTTY);
  struct termios tio;
  if (slave_fd < 0 || tcgetattr(slave_fd, &tio) != 0) {
    perror("error: cannot open the pseudo-terminal");
    return 1;
  }
  cfmakeraw(&tio);
  tcsetattr(slave_fd, TCSANOW, &tio);
  printf("pty: %s\n", slave_name);
  fflush(stdout);

  static ee_ctx_t ctx;
  /* Energy mode talks at MLPerf Tiny's energy-mode rate, 9600 baud (the interface board's link to the DUT). */
  const uint32_t baud = energy_mode ? 9600u : 115200u;
  if (energy_mode) port_set_baud(baud);
  const ee_port_t port = {port_write, port_micros, "host", port_set_baud, baud,
                          pin_fd >= 0 ? port_pin : NULL, energy_mode};
#ifdef EE_BACKEND_TFLM
  (void)input_bytes, (void)outputs, (void)model, (void)hash, (void)work;
  /* 16-byte aligned by hand: newlib-nano's aligned_alloc lacks the posix_memalign it calls. */
  /* The generated arena is the board's (32-bit structs); this 64-bit host needs its own (EE_HOST_ARENA_BYTES,
   * the build's measured host need, given by `invoke firmware-host`). */
#ifndef EE_HOST_ARENA_BYTES
#define EE_HOST_ARENA_BYTES 0
#endif
  const size_t arena_bytes = EE_HOST_ARENA_BYTES > TflmArenaSize() ? EE_HOST_ARENA_BYTES : TflmArenaSize();
  uint8_t *raw = malloc(arena_bytes + 15u);
  uint8_t *arena = raw ? (uint8_t *)(((uintptr_t)raw + 15u) & ~(uintptr_t)15u) : NULL;
  const ee_backend_t *backend = arena ? TflmBackendInit(arena, arena_bytes, port_micros) : NULL;
  if (backend == NULL) {
    fprintf(stderr, "error: the TFLM backend could not set the model up in a %lu-byte arena\n",
            (unsigned long)arena_bytes);
    return 1;
  }
#else
  ee_test_backend_clock(port_micros);
  const ee_backend_t *backend = ee_test_backend(input_bytes, outputs, model, hash, work);
#endif
  ee_init(&ctx, &port, backend);
  long commands = 0;
  char buf[256];
  for (;;) {
    struct pollfd waiting = {master_fd, POLLIN, 0};
    if (poll(&waiting, 1, 5) == 0) {  /* quiet for 5 ms */
      ee_tick(&ctx);
      continue;
    }
    ssize_t n = read(master_fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EIO) {
        usleep(1000);
        continue;
      }
      return 1;
    }
    for (ssize_t i = 0; i < n; ++i) {
      if (bad_baud && ctx.baud != port.baud) buf[i] = (char)(buf[i] ^ 0x5a);
      if (buf[i] == EE_CMD_TERMINATOR && !ee_in_frame(&ctx)) {
        ++commands;
        if (silent_after >= 0 && commands >= silent_after) continue;
        if (reset_after >= 0 && commands == reset_after) {
          ee_init(&ctx, &port, backend);  /* as after a brown-out: banner again, input and results lost */
          continue;
        }
      } else if (silent_after >= 0 && commands >= silent_after) {
        continue;
      }
      ee_feed(&ctx, buf[i]);
    }
  }
}
