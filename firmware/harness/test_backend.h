/* A deterministic TEST backend, for the host and QEMU builds where TFLM cannot be built. It is not the model:
 * its outputs are a hash of the input (the host computes the same, see pipeline/hil/test_backend.py), and it
 * reports itself as kind "test" in xinfo so no reader mistakes its figures for the model's. */
#ifndef TEST_BACKEND_H_
#define TEST_BACKEND_H_

#include "ee_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* work_rounds: passes over the input per inference, so that an inference takes measurable time. */
const ee_backend_t *ee_test_backend(size_t input_bytes, size_t output_count, const char *model_name,
                                    const char *model_hash, unsigned work_rounds);

/* With a clock (the port's microseconds), each inference is profiled as two operators, TEST_HASH and
 * TEST_OUTPUTS, so the xprofile extension can be exercised without TFLM. */
void ee_test_backend_clock(uint32_t (*micros)(void));

#ifdef __cplusplus
}
#endif

#endif /* TEST_BACKEND_H_ */
