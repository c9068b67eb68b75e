/* Example ESP-IDF application (rendered by mcu-deploy): runs each exported model on its built-in test sample and
 * prints the class, the time (esp_timer) and the arena used on the console. */
#include <stdio.h>

#include "esp_timer.h"
#include "example_models.h"

static uint32_t micros(void) { return (uint32_t)esp_timer_get_time(); }

void app_main(void) {
  static example_result results[EXAMPLE_MODEL_COUNT];
  char line[256];
  const size_t good = example_run_all(micros, results);
  for (size_t i = 0; i < EXAMPLE_MODEL_COUNT; ++i) {
    example_line(&results[i], line, sizeof(line));
    printf("%s\n", line);
  }
  printf("%u of %u models ran and matched the host\n", (unsigned)good, (unsigned)EXAMPLE_MODEL_COUNT);
}
