/* Example Zephyr application (rendered by mcu-deploy): runs each exported model on its built-in test sample and
 * prints the class, the time (the kernel's cycle counter) and the arena used on the console. */
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "cycle_clock.h"
#include "example_models.h"

/* Microseconds from the kernel's 32-bit cycle counter, extended across its wraps (cycle_clock.h): a time measured
 * across a wrap stays right. */
static uint32_t micros(void) { return (uint32_t)k_cyc_to_us_floor64(cycle_clock_extend(k_cycle_get_32())); }

static void print(const char *line) { printk("%s\n", line); }

int main(void) { return example_report(micros, print) ? 0 : 1; }
