#include "test_backend.h"

#include <string.h>

static uint8_t input[EE_MAX_DB_BYTES];
static int8_t outputs[EE_MAX_OUTPUTS];
static unsigned rounds;
static ee_backend_t backend;
static uint32_t (*clock_us)(void);
static const char *const phase_names[2] = {"TEST_HASH", "TEST_OUTPUTS"};
static uint32_t phase_us[2];

static int test_load(const uint8_t *data, size_t len) {
  if (len != backend.input_bytes) return 1;
  memcpy(input, data, len);
  return 0;
}

/* FNV-1a over the input, repeated `rounds` times; output i is byte (i mod 4) of the hash XOR 37*i. */
static int test_infer(void) {
  uint32_t hash = 2166136261u;
  unsigned r = 0;
  uint32_t t0 = clock_us ? clock_us() : 0;
  do {
    hash = 2166136261u;
    for (size_t i = 0; i < backend.input_bytes; ++i) hash = (hash ^ input[i]) * 16777619u;
  } while (++r < rounds);
  uint32_t t1 = clock_us ? clock_us() : 0;
  for (size_t i = 0; i < backend.output_count; ++i) {
    outputs[i] = (int8_t)((uint8_t)(hash >> (8u * (i % 4u))) ^ (uint8_t)(37u * i));
  }
  uint32_t t2 = clock_us ? clock_us() : 0;
  phase_us[0] = t1 - t0;
  phase_us[1] = t2 - t1;
  /* Like TFLM, which may reuse the input tensor's memory for intermediate tensors: the input does not survive an
   * inference, so the core must load it again before the next one. */
  memset(input, 0xA5, backend.input_bytes);
  return 0;
}

static size_t test_profile_count(void) { return 2; }

static void test_profile(size_t i, const char **op, uint32_t *us) {
  *op = i < 2 ? phase_names[i] : "";
  *us = i < 2 ? phase_us[i] : 0;
}

void ee_test_backend_clock(uint32_t (*micros)(void)) { clock_us = micros; }

static const int8_t *test_outputs(void) { return outputs; }

const ee_backend_t *ee_test_backend(size_t input_bytes, size_t output_count, const char *model_name,
                                    const char *model_hash, unsigned work_rounds) {
  backend.kind = "test";
  backend.model_name = model_name;
  backend.model_hash = model_hash;
  backend.input_bytes = input_bytes > EE_MAX_DB_BYTES ? EE_MAX_DB_BYTES : input_bytes;
  backend.output_count = output_count > EE_MAX_OUTPUTS ? EE_MAX_OUTPUTS : output_count;
  backend.output_scale = 1.0f / 256.0f;
  backend.output_zero_point = -128;
  backend.arena_size = 0;
  backend.load = test_load;
  backend.infer = test_infer;
  backend.outputs = test_outputs;
  backend.arena_used = NULL;
  backend.profile_count = clock_us ? test_profile_count : NULL;
  backend.profile = clock_us ? test_profile : NULL;
  rounds = work_rounds ? work_rounds : 1;
  return &backend;
}
