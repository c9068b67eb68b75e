/* The example application's models (rendered by mcu-deploy from firmware/library/example/example_models.h): each
 * runs its built-in test sample, and example_line() formats what the framework's main prints. */
#ifndef EXAMPLE_MODELS_H_
#define EXAMPLE_MODELS_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const char *name;      /* the library's name */
  int ok;                /* init and run succeeded */
  const char *status;    /* the library's status text */
  size_t index;          /* the top output (class index) */
  const char *label;     /* its class label */
  const char *expected;  /* the sample's true label ("" when unknown) */
  float score;           /* the top output, dequantized */
  int matches_host;      /* the raw int8 output equals the host TFLM runtime's for the sample */
  int float_run;         /* the float API was run too (inputs up to 4096 values) */
  int float_agrees;      /* ... and gave the same top output */
  uint32_t us;           /* one inference, by the application's clock */
  size_t arena_used, arena_size;
} example_result;

#define EXAMPLE_MODEL_COUNT @COUNT@u

/* 0 (default): each model in its library's own static arena, all ready at once. 1: the models share one buffer of
 * the largest arena and run one at a time (each is set up again before its run); the static arenas are not linked. */
#ifndef EXAMPLE_SHARED_ARENA
#define EXAMPLE_SHARED_ARENA 0
#endif
#define EXAMPLE_SHARED_ARENA_SIZE @SHARED_ARENA@u

/* Sets up and runs every model once (each in its own static arena); returns how many succeeded and matched. */
size_t example_run_all(uint32_t (*micros)(void), example_result results[EXAMPLE_MODEL_COUNT]);

/* One line (no newline) about a result. */
int example_line(const example_result *r, char *line, size_t size);

/* The example's whole job: runs every model, hands `print` one line per model and a summary (no newlines);
 * returns 1 when every model ran and gave the host TFLM runtime's output. */
int example_report(uint32_t (*micros)(void), void (*print)(const char *line));

#ifdef __cplusplus
}
#endif

#endif /* EXAMPLE_MODELS_H_ */
