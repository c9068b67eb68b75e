// ESP-IDF port: allocates the arena from internal RAM, runs the model on the generated test sample and
// prints the prediction, the latency (esp_timer) and the arena TFLM really used.
#include <cinttypes>
#include <cstdio>

#include "esp_heap_caps.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "model_runner.h"
#include "model_settings.h"

extern "C" void app_main(void) {
  printf("mcu-deploy model=%s hash=%s arena_predicted_bytes=%u\n", MODEL_NAME, MODEL_HASH, kTensorArenaSize);
  // From the heap, not a static array: the ESP32's statically allocatable DRAM is far smaller than its heap.
  auto* arena = static_cast<uint8_t*>(
      heap_caps_aligned_alloc(16, kTensorArenaSize, MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT));
  if (arena == nullptr) {
    printf("error: cannot allocate a %u-byte arena (largest free internal block %u bytes)\n", kTensorArenaSize,
           static_cast<unsigned>(heap_caps_get_largest_free_block(MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT)));
    return;
  }
  if (!model_runner::Setup(arena, kTensorArenaSize)) {
    printf("error: model setup failed\n");
    return;
  }
  printf("arena_used_bytes=%u\n", static_cast<unsigned>(model_runner::ArenaUsedBytes()));
  while (true) {
    model_runner::Result result;
    const int64_t start = esp_timer_get_time();
    const bool ok = model_runner::Run(kSampleInput, &result);
    const int64_t elapsed_us = esp_timer_get_time() - start;
    if (!ok) {
      printf("error: inference failed\n");
      return;
    }
    const char* label = result.top_index < kLabelCount ? kLabels[result.top_index] : "?";
    printf("prediction=%s score=%.4f expected=%s matches_host=%s latency_us=%" PRId64 "\n", label,
           static_cast<double>(result.top_value), SAMPLE_LABEL, result.matches_expected ? "yes" : "no",
           elapsed_us);
    vTaskDelay(pdMS_TO_TICKS(1000));
  }
}
