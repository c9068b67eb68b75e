// Zephyr port: the benchmark harness (MLPerf Tiny serial protocol, docs/serial-protocol.md) on the console UART
// (polled), timed by the kernel's cycle counter, with the TFLM backend. At boot it runs the model once on the
// generated test sample and prints the prediction, the latency and the arena TFLM really used against its size.
#include <zephyr/device.h>
#include <zephyr/drivers/uart.h>
#include <zephyr/kernel.h>

#include <cstdio>

#include "ee_core.h"
#include "model_runner.h"
#include "model_settings.h"
#include "tflm_backend.h"

namespace {

const struct device* const kConsole = DEVICE_DT_GET(DT_CHOSEN(zephyr_console));

// Static and aligned: the arena is sized by mcu-deploy for this model and the board's kernels.
alignas(16) uint8_t tensor_arena[kTensorArenaSize];

void ConsoleWrite(const char* text, size_t len) {
  for (size_t i = 0; i < len; ++i) uart_poll_out(kConsole, static_cast<unsigned char>(text[i]));
}

// Microseconds from the 32-bit hardware cycle counter, extended to 64 bits across its wraps (at 120 MHz it wraps
// every 36 s; the harness reads the clock far more often than that).
uint32_t Micros() {
  static uint32_t last = 0;
  static uint64_t high = 0;
  const uint32_t now = k_cycle_get_32();
  if (now < last) high += 1ull << 32;
  last = now;
  return static_cast<uint32_t>(k_cyc_to_us_floor64(high + now));
}

void Print(const char* text) { ConsoleWrite(text, __builtin_strlen(text)); }

[[noreturn]] void Halt(const char* reason) {
  char line[160];
  snprintf(line, sizeof(line), "e-[%s]\r\n", reason);
  for (;;) {
    Print(line);
    k_sleep(K_SECONDS(1));
  }
}

}  // namespace

int main(void) {
  if (!device_is_ready(kConsole)) {
    for (;;) k_sleep(K_SECONDS(1));  // nowhere to say it
  }
  if (!model_runner::Setup(tensor_arena, kTensorArenaSize, Micros)) {
    char reason[96];
    snprintf(reason, sizeof(reason), "model setup failed in a %u-byte arena (see TFLM's message above)",
             static_cast<unsigned>(kTensorArenaSize));
    Halt(reason);
  }
  char line[200];
  ConsoleWrite(line, model_runner::SelfTestLine(line, sizeof(line), Micros));

  static ee_ctx_t ctx;
  static const ee_port_t port = {ConsoleWrite, Micros, "@PLATFORM@"};
  ee_init(&ctx, &port, TflmBackend());
  for (;;) {
    unsigned char c;
    if (uart_poll_in(kConsole, &c) == 0) {
      ee_feed(&ctx, static_cast<char>(c));
    } else {
      k_yield();
    }
  }
  return 0;
}
