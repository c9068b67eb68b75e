/* Example host program (rendered by mcu-deploy): runs each exported model on its built-in test sample and prints
 * the class, the time (this computer's monotonic clock) and the arena used. Exit status 0 when every model ran
 * and gave the host TFLM runtime's output. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <time.h>

#include "example_models.h"

static uint32_t micros(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint32_t)((uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u);
}

static void print(const char *line) { printf("%s\n", line); }

int main(void) { return example_report(micros, print) ? 0 : 1; }
