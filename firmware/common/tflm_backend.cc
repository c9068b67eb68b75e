#include "tflm_backend.h"

#include "model_runner.h"
#include "model_settings.h"

namespace {

int Load(const uint8_t* input, size_t len) {
  if (len != static_cast<size_t>(kInputSize)) return 1;
  model_runner::LoadInput(reinterpret_cast<const int8_t*>(input));
  return 0;
}

int Infer() { return model_runner::Invoke() ? 0 : 1; }

const int8_t* Outputs() { return model_runner::Output(); }

size_t ArenaUsed() { return model_runner::ArenaUsedBytes(); }

size_t ProfileCount() { return model_runner::ProfileCount(); }

}  // namespace

size_t TflmArenaSize(void) { return kTensorArenaSize; }

const ee_backend_t* TflmBackendInit(uint8_t* arena, size_t arena_size, uint32_t (*micros)(void)) {
  return model_runner::Setup(arena, arena_size, micros) ? TflmBackend() : nullptr;
}

const ee_backend_t* TflmBackend(void) {
  static ee_backend_t backend;
  backend.kind = "tflm";
  backend.model_name = MODEL_NAME;
  backend.model_hash = MODEL_HASH;
  backend.input_bytes = kInputSize;
  backend.output_count = kOutputSize;
  backend.output_scale = kOutputScale;
  backend.output_zero_point = kOutputZeroPoint;
  backend.arena_size = kTensorArenaSize;
  backend.load = Load;
  backend.infer = Infer;
  backend.outputs = Outputs;
  backend.arena_used = ArenaUsed;
  backend.profile_count = ProfileCount;
  backend.profile = model_runner::ProfileEntry;
  return &backend;
}
