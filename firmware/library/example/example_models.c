/* Rendered by mcu-deploy from firmware/library/example/example_models.c: the models of this example and the line
 * the example prints for each. */
#include "example_models.h"

#include <stdio.h>
#include <string.h>

@INCLUDES@

#if EXAMPLE_SHARED_ARENA
static void *shared_arena(void) {
  static unsigned char raw[EXAMPLE_SHARED_ARENA_SIZE + 15u];
  return (void *)(((uintptr_t)raw + 15u) & ~(uintptr_t)15u); /* 16-byte aligned, in C99 */
}
#endif

@RUNNERS@
size_t example_run_all(uint32_t (*micros)(void), example_result results[EXAMPLE_MODEL_COUNT]) {
  size_t good = 0, i;
  memset(results, 0, sizeof(example_result) * EXAMPLE_MODEL_COUNT);
@CALLS@
  for (i = 0; i < EXAMPLE_MODEL_COUNT; ++i) {
    good += results[i].ok && results[i].matches_host && (!results[i].float_run || results[i].float_agrees);
  }
  return good;
}

int example_line(const example_result *r, char *line, size_t size) {
  /* the score in thousandths, without printf's float support (off by default in newlib-nano and picolibc) */
  const long milli = (long)(r->score * 1000.0f + (r->score < 0 ? -0.5f : 0.5f));
  const unsigned long whole = (unsigned long)(milli < 0 ? -milli : milli);
  if (!r->ok) return snprintf(line, size, "%s: error: %s", r->name, r->status);
  return snprintf(line, size,
                  "%s: class %s (output %u, score %s%lu.%03lu; sample's label %s), matches host TFLM: %s%s, %lu us, "
                  "arena %u of %u bytes used",
                  r->name, r->label, (unsigned)r->index, milli < 0 ? "-" : "", whole / 1000, whole % 1000,
                  r->expected[0] ? r->expected : "unknown",
                  r->matches_host ? "yes" : "no",
                  r->float_run ? (r->float_agrees ? ", float API agrees" : ", float API DISAGREES") : "",
                  (unsigned long)r->us, (unsigned)r->arena_used, (unsigned)r->arena_size);
}

int example_report(uint32_t (*micros)(void), void (*print)(const char *line)) {
  static example_result results[EXAMPLE_MODEL_COUNT];
  char line[256];
  size_t i;
  const size_t good = example_run_all(micros, results);
  for (i = 0; i < EXAMPLE_MODEL_COUNT; ++i) {
    example_line(&results[i], line, sizeof(line));
    print(line);
  }
  snprintf(line, sizeof(line), "%u of %u models ran and gave the host TFLM runtime's output (%s)", (unsigned)good,
           (unsigned)EXAMPLE_MODEL_COUNT, EXAMPLE_SHARED_ARENA ? "one shared arena" : "an arena each");
  print(line);
  return good == EXAMPLE_MODEL_COUNT;
}
