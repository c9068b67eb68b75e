// The harness backend that runs the model library (through model_runner). C-callable, so the C
// ports (host, QEMU) can use it when built with -DEE_BACKEND_TFLM against a TFLM library.
#ifndef TFLM_BACKEND_H_
#define TFLM_BACKEND_H_

#include <stddef.h>
#include <stdint.h>

#include "ee_core.h"

#ifdef __cplusplus
extern "C" {
#endif

// The arena the model needs (the library's ARENA_SIZE).
size_t TflmArenaSize(void);

// Sets the model up in `arena` (16-byte aligned, TflmArenaSize() bytes) and returns the backend, or NULL
// when the model, the op resolver or the arena does not work (model_runner::SetupFailureReason says why).
// `micros` (the port's clock, or NULL) times each operator for the xprofile command.
const ee_backend_t* TflmBackendInit(uint8_t* arena, size_t arena_size, uint32_t (*micros)(void));

// The backend of a model already set up with model_runner::Setup() (with a clock, it serves xprofile).
const ee_backend_t* TflmBackend(void);

#ifdef __cplusplus
}
#endif

#endif  // TFLM_BACKEND_H_
