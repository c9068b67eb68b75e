// The harness backend that runs the generated model with TFLM (through model_runner).
#ifndef TFLM_BACKEND_H_
#define TFLM_BACKEND_H_

#include "ee_core.h"

// Call after model_runner::Setup() succeeded.
const ee_backend_t* TflmBackend();

#endif  // TFLM_BACKEND_H_
