/* Cortex-M port for QEMU's mps2 machines: the harness core on UART0 (CMSDK APB UART), timed by SysTick. Built as
 * is for mps2-an386 (Cortex-M4F), mps2-an385 (ARMv6-M code on its Cortex-M3) and mps2-an500 (Cortex-M7), which share
 * one memory map; for mps2-an505 (Cortex-M33, booting secure) with -DUART0_BASE=0x50200000u
 * -DCORE_CLOCK_HZ=20000000u and mps2_an505.ld.
 * QEMU has no DWT cycle counter (it reads 0), so time comes from SysTick; run QEMU with -icount shift=0 for
 * repeatable timings. The backend is the deterministic TEST backend, or with -DEE_BACKEND_TFLM (linked with a
 * TFLM library for cortex-m4, the generated model files and common/{model_runner,tflm_backend}.cc) the model.
 * The timestamp pin is bit 0 of the MPS2's CMSDK AHB GPIO 0 (0x40010000; the AN505's at 0x40100000 non-secure,
 * 0x50100000 secure). QEMU 7.2 maps those GPIO blocks as unimplemented devices: the writes go nowhere, but
 * `qemu-system-arm -d unimp` logs each one (offset 0x4, DATAOUT), which is how the tests watch the pin. -DEE_ENERGY_MODE=1
 * builds MLPerf Tiny's energy mode (timestamps as low pulses, 9600 baud). */
#include <stdint.h>
#include <stdlib.h>

#include "ee_core.h"
#include "test_backend.h"
#ifdef EE_BACKEND_TFLM
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tflm_backend.h"
#endif

#ifndef EE_INPUT_BYTES
#define EE_INPUT_BYTES 64
#endif
#ifndef EE_OUTPUTS
#define EE_OUTPUTS 10
#endif
#ifndef EE_MODEL_NAME
#define EE_MODEL_NAME "test"
#endif
#ifndef EE_MODEL_HASH
#define EE_MODEL_HASH "0000000000000000"
#endif
#ifndef EE_WORK_ROUNDS
#define EE_WORK_ROUNDS 50
#endif

#ifndef CORE_CLOCK_HZ
#define CORE_CLOCK_HZ 25000000u  /* the MPS2 FPGA images' system clock (AN385/AN386/AN500; AN505: 20 MHz) */
#endif
#ifndef UART0_BASE
#define UART0_BASE 0x40004000u  /* CMSDK UART0 (AN385/AN386/AN500; AN505: 0x50200000 secure alias) */
#endif

typedef struct {
  volatile uint32_t DATA, STATE, CTRL, INTSTATUS, BAUDDIV;
} cmsdk_uart_t;
#define UART0 ((cmsdk_uart_t *)UART0_BASE)
#define UART_STATE_TX_FULL 1u
#define UART_STATE_RX_FULL 2u

#ifndef GPIO0_BASE
#define GPIO0_BASE 0x40010000u  /* CMSDK AHB GPIO 0 (AN385/AN386/AN500; AN505: 0x50100000 secure alias) */
#endif
typedef struct {
  volatile uint32_t DATA, DATAOUT, reserved[2], OUTENSET, OUTENCLR;
} cmsdk_gpio_t;
#define GPIO0 ((cmsdk_gpio_t *)GPIO0_BASE)
#define TIMESTAMP_PIN 1u  /* bit 0: the MPS2 expansion header's GPIO 0 */

typedef struct {
  volatile uint32_t CTRL, LOAD, VAL, CALIB;
} systick_t;
#define SYSTICK ((systick_t *)0xE000E010u)
#define TICKS_PER_MS (CORE_CLOCK_HZ / 1000u)

static volatile uint32_t milliseconds;

void SysTick_Handler(void) { ++milliseconds; }

/* Microseconds, never stepping back. SysTick counts down and reloads every millisecond, and the millisecond count
 * moves when its interrupt is taken; under QEMU the counter reads as reloaded a little before that (neither the
 * interrupt nor its pending bit is there yet), which read as time 999 us back once a millisecond. So the count is
 * read again around the counter (an interrupt taken meanwhile: read both again), and a reading behind the last one
 * returned is a reload whose interrupt is still to come: that millisecond has passed. */
static uint32_t micros(void) {
  static uint32_t last;
  uint32_t ms, val;
  do {
    ms = milliseconds;
    val = SYSTICK->VAL;
  } while (ms != milliseconds);
  uint32_t now = ms * 1000u + (TICKS_PER_MS - 1u - val) / (CORE_CLOCK_HZ / 1000000u);
  if ((int32_t)(now - last) < 0) now += 1000u;
  if ((int32_t)(now - last) < 0) now = last;
  last = now;
  return now;
}

/* A plain write, no read-modify-write: the pin is the block's only output (and QEMU's stand-in block reads 0). */
static void pin_write(int level) { GPIO0->DATAOUT = level ? TIMESTAMP_PIN : 0u; }

static void uart_write(const char *text, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    while (UART0->STATE & UART_STATE_TX_FULL) {
    }
    UART0->DATA = (uint8_t)text[i];
  }
}

/* The CMSDK UART's divider, as on the real MPS2 FPGA image; QEMU's model of it moves bytes at the speed of the
 * emulation whatever the divider, so the switch is exercised end to end without changing the speed. TX drains first. */
static int uart_set_baud(uint32_t baud) {
  while (UART0->STATE & UART_STATE_TX_FULL) {
  }
  UART0->BAUDDIV = CORE_CLOCK_HZ / baud;
  return 0;
}

#ifdef EE_BACKEND_TFLM
/* TFLM's messages (MicroPrintf: why a model failed to set up) go to the UART, as e- lines the reader shows. */
static void tflm_log(const char *text) {
  static const char prefix[] = "e-[TFLM: ";
  size_t len = 0;
  while (text[len] && text[len] != '\r' && text[len] != '\n') ++len;
  if (len == 0) return;
  uart_write(prefix, sizeof(prefix) - 1);
  uart_write(text, len);
  uart_write("]\r\n", 3);
}
#endif

#if EE_ENERGY_MODE
#define CONSOLE_BAUD 9600u  /* MLPerf Tiny's energy-mode rate */
#else
#define CONSOLE_BAUD 115200u
#endif

int main(void) {
  UART0->BAUDDIV = CORE_CLOCK_HZ / CONSOLE_BAUD;
  GPIO0->OUTENSET = TIMESTAMP_PIN;
  UART0->CTRL = 3u;  /* TX and RX enabled */
  SYSTICK->LOAD = TICKS_PER_MS - 1u;
  SYSTICK->VAL = 0;
  SYSTICK->CTRL = 7u;  /* core clock, interrupt, enabled */

  static ee_ctx_t ctx;
  static const ee_port_t port = {uart_write, micros, "qemu-icount", uart_set_baud, CONSOLE_BAUD, pin_write,
                                 EE_ENERGY_MODE};
#ifdef EE_BACKEND_TFLM
  RegisterDebugLogCallback(tflm_log);
  /* 16-byte aligned by hand: newlib-nano's aligned_alloc lacks the posix_memalign it calls. */
  uint8_t *raw = malloc(TflmArenaSize() + 15u);
  uint8_t *arena = raw ? (uint8_t *)(((uintptr_t)raw + 15u) & ~(uintptr_t)15u) : NULL;
  const ee_backend_t *backend = arena ? TflmBackendInit(arena, TflmArenaSize(), micros) : NULL;
  if (backend == NULL) {
    static const char message[] = "e-[TFLM backend setup failed]\r\n";
    uart_write(message, sizeof(message) - 1);
    for (;;) {
    }
  }
#else
  ee_test_backend_clock(micros);
  const ee_backend_t *backend =
      ee_test_backend(EE_INPUT_BYTES, EE_OUTPUTS, EE_MODEL_NAME, EE_MODEL_HASH, EE_WORK_ROUNDS);
#endif
  ee_init(&ctx, &port, backend);
#ifdef EE_CLOCK_CHECK
  /* Test builds: once the host sends something (QEMU drops what is written before it connects), read the clock
   * EE_CLOCK_CHECK times and say how often it stepped back, and by how much at most. */
  while (!(UART0->STATE & UART_STATE_RX_FULL)) {
  }
  uint32_t back = 0, worst = 0, previous = micros();
  for (uint32_t i = 0; i < EE_CLOCK_CHECK; ++i) {
    uint32_t now = micros();
    if ((int32_t)(now - previous) < 0) {
      ++back;
      if (previous - now > worst) worst = previous - now;
    }
    previous = now;
  }
  ee_printf(&ctx, "m-x-clock-back-%lu-worst-%lu-us", (unsigned long)back, (unsigned long)worst);
#endif
  for (uint32_t idle = 0;; ++idle) {
    if (UART0->STATE & UART_STATE_RX_FULL) {
      ee_feed(&ctx, (char)UART0->DATA);
      idle = 0;
    } else if (idle == 10000u) {
      ee_tick(&ctx);
      idle = 0;
    }
  }
}
