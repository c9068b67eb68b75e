/* Example Zephyr application (rendered by mcu-deploy): runs each exported model on its built-in test sample and
 * prints the class, the time (the kernel's cycle counter) and the arena used on the console. */
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "example_models.h"

static uint32_t micros(void) { return k_cyc_to_us_floor32(k_cycle_get_32()); }

int main(void) {
  static example_result results[EXAMPLE_MODEL_COUNT];
  char line[256];
  const size_t good = example_run_all(micros, results);
  for (size_t i = 0; i < EXAMPLE_MODEL_COUNT; ++i) {
    example_line(&results[i], line, sizeof(line));
    printk("%s\n", line);
  }
  printk("%u of %u models ran and matched the host\n", (unsigned)good, (unsigned)EXAMPLE_MODEL_COUNT);
  return 0;
}
