/* STAND-IN, declarations only, written for the tests: the configuration part of TFLM's microfrontend API
 * (tensorflow/lite/experimental/microfrontend/lib/frontend_util.h) that firmware/library/model.cc sets.
 * Not TFLM's header; nothing here runs. */
#ifndef STANDIN_MICROFRONTEND_FRONTEND_UTIL_H_
#define STANDIN_MICROFRONTEND_FRONTEND_UTIL_H_

#include "tensorflow/lite/experimental/microfrontend/lib/frontend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct FrontendConfig {
  struct { size_t size_ms; size_t step_size_ms; } window;
  struct { int num_channels; float upper_band_limit; float lower_band_limit; int output_scale_shift; } filterbank;
  struct { int smoothing_bits; float even_smoothing; float odd_smoothing; float min_signal_remaining; } noise_reduction;
  struct { int enable_pcan; float strength; float offset; int gain_bits; } pcan_gain_control;
  struct { int enable_log; int scale_shift; } log_scale;
};

void FrontendFillConfigWithDefaults(struct FrontendConfig* config);
int FrontendPopulateState(const struct FrontendConfig* config, struct FrontendState* state, int sample_rate);
void FrontendFreeStateContents(struct FrontendState* state);

#ifdef __cplusplus
}
#endif

#endif
