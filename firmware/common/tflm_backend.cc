#include "tflm_backend.h"

#include "model_runner.h"
#include MODEL_LIB_SETTINGS_H  // MODEL_HAS_AUDIO_FRONTEND and the front end's kFrontend* settings

#if MODEL_HAS_AUDIO_FRONTEND
// The audio front end is the model library's (firmware/library/model.cc: TFLM's microfrontend configured with the
// settings the model was trained with); the harness core pools and quantizes the frames itself (xaudio).
#include "model_library.h"

namespace {

using namespace MODEL_LIB_NAMESPACE;  // the generated settings

void FeReset(void) { (void)MODEL_LIB(audio_reset)(); }

int FeProcess(const int16_t* samples, size_t n, uint16_t* frame) {
  int produced = 0;
  if (MODEL_LIB(audio_frame)(samples, n, frame, &produced) != MODEL_LIB_OK) return -1;
  return produced;
}

}  // namespace
#endif

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
#if MODEL_HAS_AUDIO_FRONTEND  // the xaudio/xfeatures hook: 16-bit PCM in, the model's features out
  backend.fe_reset = FeReset;
  backend.fe_process = FeProcess;
  backend.fe_stride_samples = kFrontendStrideSamples;
  backend.fe_mel_channels = kFrontendMelChannels;
  backend.fe_frame_step = kFrontendFrameStep;
  backend.fe_channel_group = kFrontendChannelGroup;
  backend.fe_frames = kFrontendFrames;
  backend.fe_feature_scale = kFeatureScale;
  backend.input_scale = MODEL_LIB(input_scale)();
  backend.input_zero_point = static_cast<int>(MODEL_LIB(input_zero_point)());
#endif
  return &backend;
}
