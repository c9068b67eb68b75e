/* Example ESP-IDF application (rendered by mcu-deploy): runs each exported model on its built-in test sample and
 * prints the class, the time (esp_timer) and the arena used on the console. */
#include <stdio.h>

#include "esp_timer.h"
#include "example_models.h"

static uint32_t micros(void) { return (uint32_t)esp_timer_get_time(); }

static void print(const char *line) { printf("%s\n", line); }

void app_main(void) { example_report(micros, print); }
