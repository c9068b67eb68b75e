#include "tflm_backend.h"

#include "model_runner.h"

namespace {

int Load(const uint8_t* input, size_t len) {
  if (len != MODEL_LIB_INPUT_SIZE) return 1;
  model_runner::LoadInput(reinterpret_cast<const int8_t*>(input));
  return 0;
}

int Infer() { return model_runner::Invoke() ? 0 : 1; }

const int8_t* Outputs() { return model_runner::Output(); }

size_t ArenaUsed() { return model_runner::ArenaUsedBytes(); }

size_t ProfileCount() { return model_runner::ProfileCount(); }

}  // namespace

size_t TflmArenaSize(void) { return model_runner::kArenaSize; }

const ee_backend_t* TflmBackendInit(uint8_t* arena, size_t arena_size, uint32_t (*micros)(void)) {
  return model_runner::Setup(arena, arena_size, micros) ? TflmBackend() : nullptr;
}

const ee_backend_t* TflmBackend(void) {
  static ee_backend_t backend;
  backend.kind = "tflm";
  backend.model_name = MODEL_LIB(model_name)();
  backend.model_hash = MODEL_LIB(model_hash)();
  backend.model_id = MODEL_LIB(model_id)();
  backend.input_bytes = MODEL_LIB_INPUT_SIZE;
  backend.output_count = MODEL_LIB_OUTPUT_SIZE;
  backend.output_scale = MODEL_LIB(output_scale)();
  backend.output_zero_point = MODEL_LIB(output_zero_point)();
  backend.arena_size = model_runner::kArenaSize;
  backend.load = Load;
  backend.infer = Infer;
  backend.outputs = Outputs;
  backend.arena_used = ArenaUsed;
  backend.profile_count = ProfileCount;
  backend.profile = model_runner::ProfileEntry;
  return &backend;
}
