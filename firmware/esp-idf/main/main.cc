// ESP-IDF port: the benchmark harness (MLPerf Tiny serial protocol, docs/serial-protocol.md) on the console
// UART, with the TFLM backend. At boot it also runs the model once on the generated test sample and prints the
// prediction, the latency and the arena TFLM really used, so a plain serial monitor shows the model working.
#include <cinttypes>
#include <cstdio>

#include "driver/uart.h"
#include "ee_core.h"
#include "esp_heap_caps.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "model_runner.h"
#include "model_settings.h"
#include "tflm_backend.h"

namespace {

constexpr uart_port_t kUart = UART_NUM_0;

void UartWrite(const char* text, size_t len) { uart_write_bytes(kUart, text, len); }

uint32_t Micros() { return static_cast<uint32_t>(esp_timer_get_time()); }

}  // namespace

extern "C" void app_main(void) {
  uart_driver_install(kUart, 1024, 0, 0, nullptr, 0);
  // From the heap, not a static array: the ESP32's statically allocatable DRAM is far smaller than its heap.
  auto* arena = static_cast<uint8_t*>(
      heap_caps_aligned_alloc(16, kTensorArenaSize, MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT));
  if (arena == nullptr) {
    printf("e-[cannot allocate a %u-byte arena: largest free internal block %u bytes]\r\n", kTensorArenaSize,
           static_cast<unsigned>(heap_caps_get_largest_free_block(MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT)));
    return;
  }
  if (!model_runner::Setup(arena, kTensorArenaSize)) {
    printf("e-[model setup failed]\r\n");
    return;
  }
  model_runner::Result result;
  const int64_t start = esp_timer_get_time();
  const bool ok = model_runner::Run(kSampleInput, &result);
  const int64_t elapsed_us = esp_timer_get_time() - start;
  const char* label = ok && result.top_index < kLabelCount ? kLabels[result.top_index] : "?";
  printf("m-x-selftest-[model=%s prediction=%s expected=%s matches_host=%s latency_us=%" PRId64
         " arena_used_bytes=%u arena_predicted_bytes=%u]\r\n",
         MODEL_NAME, label, SAMPLE_LABEL, ok && result.matches_expected ? "yes" : "no", elapsed_us,
         static_cast<unsigned>(model_runner::ArenaUsedBytes()), kTensorArenaSize);
  fflush(stdout);

  static ee_ctx_t ctx;
  static const ee_port_t port = {UartWrite, Micros};
  ee_init(&ctx, &port, TflmBackend());
  uint8_t received[64];
  for (;;) {
    const int n = uart_read_bytes(kUart, received, sizeof(received), pdMS_TO_TICKS(20));
    for (int i = 0; i < n; ++i) ee_feed(&ctx, static_cast<char>(received[i]));
  }
}
