/* STAND-IN, declarations only, written for the tests: the parts of TFLM's microfrontend API
 * (tensorflow/lite/experimental/microfrontend/lib/frontend.h) that firmware/library/model.cc uses, so the
 * tests can compile it where TFLM's sources are not installed. Not TFLM's header; nothing here runs. */
#ifndef STANDIN_MICROFRONTEND_FRONTEND_H_
#define STANDIN_MICROFRONTEND_FRONTEND_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct FrontendOutput {
  const uint16_t* values;
  size_t size;
};

struct FrontendState {
  unsigned char opaque[256]; /* the real state holds the window, FFT, filterbank, noise and PCAN states */
};

struct FrontendOutput FrontendProcessSamples(struct FrontendState* state, const int16_t* samples, size_t num_samples,
                                             size_t* num_samples_read);
void FrontendReset(struct FrontendState* state);

#ifdef __cplusplus
}
#endif

#endif
