/* Example Zephyr application (rendered by mcu-deploy): runs each exported model on its built-in test sample and
 * prints the class, the time (the kernel's cycle counter) and the arena used on the console. */
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "example_models.h"

static uint32_t micros(void) { return k_cyc_to_us_floor32(k_cycle_get_32()); }

static void print(const char *line) { printk("%s\n", line); }

int main(void) { return example_report(micros, print) ? 0 : 1; }
