// @NAME@: the C API of model.h over TensorFlow Lite Micro, rendered by mcu-deploy from firmware/library/model.cc.
// Everything but the API's @P@_* functions has internal linkage or lives in namespace @P@_model, so libraries
// of several models link into one firmware. This file prints nothing (TFLM itself may log through MicroPrintf).
@TFLM_PRELUDE@#include "@P@.h"

#include <cstring>
#include <new>

// A build that cannot pass -D flags (an Arduino sketch) sets @PU@_PROFILE_MAX_OPS in @P@_config.h instead.
#if defined(__has_include)
#if __has_include("@P@_config.h")
#include "@P@_config.h"
#endif
#endif
#ifndef @PU@_PROFILE_MAX_OPS
#define @PU@_PROFILE_MAX_OPS 0
#endif

#include "@P@_model_data.h"
#include "@P@_model_ops.h"
#include "@P@_model_settings.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

#if MODEL_HAS_AUDIO_FRONTEND
// TFLM's audio front end (tensorflow/lite/experimental/microfrontend/lib): compile its sources in with the library.
#include "tensorflow/lite/experimental/microfrontend/lib/frontend.h"
#include "tensorflow/lite/experimental/microfrontend/lib/frontend_util.h"
#endif

using namespace @P@_model;

namespace {

#if @PU@_PROFILE_MAX_OPS > 0
// Times each operator with the caller's clock: TFLM calls BeginEvent/EndEvent around every operator's Invoke.
class OpProfiler : public tflite::MicroProfilerInterface {
 public:
  explicit OpProfiler(uint32_t (*clock)(void)) : clock_(clock) {}

  uint32_t BeginEvent(const char* tag) override {
    if (count_ >= @PU@_PROFILE_MAX_OPS) return @PU@_PROFILE_MAX_OPS;
    tags_[count_] = tag;
    start_[count_] = clock_();
    us_[count_] = 0;
    return static_cast<uint32_t>(count_++);
  }

  void EndEvent(uint32_t handle) override {
    if (handle < count_) us_[handle] = clock_() - start_[handle];
  }

  void Reset() { count_ = 0; }
  size_t count() const { return count_; }
  const char* tag(size_t i) const { return tags_[i]; }
  uint32_t us(size_t i) const { return us_[i]; }

 private:
  uint32_t (*clock_)(void);
  size_t count_ = 0;
  const char* tags_[@PU@_PROFILE_MAX_OPS] = {};
  uint32_t start_[@PU@_PROFILE_MAX_OPS] = {};
  uint32_t us_[@PU@_PROFILE_MAX_OPS] = {};
};
alignas(OpProfiler) uint8_t profiler_storage[sizeof(OpProfiler)];
OpProfiler* profiler = nullptr;
#endif

// Constructed in place by init: no heap, and no global constructor or destructor (bare-metal start-up code need
// not run them).
alignas(ModelOpResolver) uint8_t resolver_storage[sizeof(ModelOpResolver)];
alignas(tflite::MicroInterpreter) uint8_t interpreter_storage[sizeof(tflite::MicroInterpreter)];
ModelOpResolver* op_resolver = nullptr;
tflite::MicroInterpreter* interpreter = nullptr;
uint32_t (*profile_clock)(void) = nullptr;

const int32_t kInputShape[] = {@INPUT_SHAPE@};
const int32_t kOutputShape[] = {@OUTPUT_SHAPE@};

int8_t Quantize(float value, float scale, int zero_point) {
  const float scaled = value / scale;
  // round half away from zero, as TFLite's quantizer (std::round), without libm
  const long rounded = static_cast<long>(scaled >= 0.0f ? scaled + 0.5f : scaled - 0.5f) + zero_point;
  return static_cast<int8_t>(rounded < -128 ? -128 : (rounded > 127 ? 127 : rounded));
}

#if MODEL_HAS_AUDIO_FRONTEND
// The front end as training configured it; the pooling (every kFrontendFrameStep-th frame, kFrontendChannelGroup
// adjacent channels averaged in integers, round half up) and the quantization are those of the host's
// pipeline/target/frontend.py and the harness's xaudio, so the input is the one training and `invoke measure` saw.
constexpr int kAudioChannels = kFrontendMelChannels / kFrontendChannelGroup;
FrontendState audio_state;
bool audio_ready = false;
uint32_t audio_raw_frames = 0;  // frames out of the microfrontend since the reset
uint32_t audio_kept = 0;        // frames in the window (at most kFrontendFrames)
uint16_t audio_window[kFrontendFrames * kAudioChannels];

bool AudioSetUp() {
  if (audio_ready) return true;
  FrontendConfig config;
  FrontendFillConfigWithDefaults(&config);
  config.window.size_ms = kFrontendWindowMs;
  config.window.step_size_ms = kFrontendStrideMs;
  config.filterbank.num_channels = kFrontendMelChannels;
  config.filterbank.lower_band_limit = kFrontendLowerBandHz;
  config.filterbank.upper_band_limit = kFrontendUpperBandHz;
  config.noise_reduction.smoothing_bits = kFrontendNoiseSmoothingBits;
  config.noise_reduction.even_smoothing = kFrontendNoiseEvenSmoothing;
  config.noise_reduction.odd_smoothing = kFrontendNoiseOddSmoothing;
  // 1.0 is the microfrontend's "no noise reduction"
  config.noise_reduction.min_signal_remaining = kFrontendNoiseReduction ? kFrontendNoiseMinSignalRemaining : 1.0f;
  config.pcan_gain_control.enable_pcan = kFrontendPcan;
  config.pcan_gain_control.strength = kFrontendPcanStrength;
  config.pcan_gain_control.offset = kFrontendPcanOffset;
  config.pcan_gain_control.gain_bits = kFrontendPcanGainBits;
  config.log_scale.enable_log = kFrontendLogScale;
  config.log_scale.scale_shift = kFrontendLogScaleShift;
  audio_ready = FrontendPopulateState(&config, &audio_state, kFrontendSampleRate) != 0;
  audio_raw_frames = audio_kept = 0;
  return audio_ready;
}

// One stride through the microfrontend: 1 with a frame in `mel`, 0 without, -1 on a malformed frame.
int AudioFrame(const int16_t* samples, size_t count, uint16_t* mel) {
  size_t read = 0;
  const FrontendOutput out = FrontendProcessSamples(&audio_state, samples, count, &read);
  if (out.size == 0) return 0;
  if (out.size != static_cast<size_t>(kFrontendMelChannels)) return -1;
  std::memcpy(mel, out.values, out.size * sizeof(uint16_t));
  return 1;
}
#endif

}  // namespace

extern "C" {

@P@_status @P@_audio_reset(void) {
#if MODEL_HAS_AUDIO_FRONTEND
  if (!AudioSetUp()) return @PU@_ERROR_AUDIO_FRONTEND;
  FrontendReset(&audio_state);
  audio_raw_frames = audio_kept = 0;
  return @PU@_OK;
#else
  return @PU@_ERROR_NO_AUDIO_FRONTEND;
#endif
}

@P@_status @P@_audio_frame(const int16_t* samples, size_t count, uint16_t* mel, int* produced) {
#if MODEL_HAS_AUDIO_FRONTEND
  if (samples == nullptr || mel == nullptr || count != static_cast<size_t>(kFrontendStrideSamples)) {
    return @PU@_ERROR_ARGUMENT;
  }
  if (!AudioSetUp()) return @PU@_ERROR_AUDIO_FRONTEND;
  const int got = AudioFrame(samples, count, mel);
  if (got < 0) return @PU@_ERROR_AUDIO_FRONTEND;
  if (produced) *produced = got;
  return @PU@_OK;
#else
  (void)samples, (void)count, (void)mel, (void)produced;
  return @PU@_ERROR_NO_AUDIO_FRONTEND;
#endif
}

@P@_status @P@_audio_feed(const int16_t* samples, size_t count, int* ready) {
#if MODEL_HAS_AUDIO_FRONTEND
  if (ready) *ready = 0;
  if (samples == nullptr || count != static_cast<size_t>(kFrontendStrideSamples)) return @PU@_ERROR_ARGUMENT;
  if (interpreter == nullptr) return @PU@_ERROR_NOT_INITIALIZED;
  if (!AudioSetUp()) return @PU@_ERROR_AUDIO_FRONTEND;
  uint16_t mel[kFrontendMelChannels];
  const int got = AudioFrame(samples, count, mel);
  if (got < 0) return @PU@_ERROR_AUDIO_FRONTEND;
  if (got == 1 && audio_raw_frames++ % kFrontendFrameStep == 0) {
    if (audio_kept == static_cast<uint32_t>(kFrontendFrames)) {  // a full window: the oldest frame goes
      std::memmove(audio_window, audio_window + kAudioChannels,
                   (kFrontendFrames - 1) * kAudioChannels * sizeof(uint16_t));
      --audio_kept;
    }
    uint16_t* frame = audio_window + audio_kept++ * kAudioChannels;
    for (int c = 0; c < kAudioChannels; ++c) {
      uint32_t sum = 0;
      for (int g = 0; g < kFrontendChannelGroup; ++g) sum += mel[c * kFrontendChannelGroup + g];
      frame[c] = static_cast<uint16_t>((sum + kFrontendChannelGroup / 2) / kFrontendChannelGroup);
    }
    if (audio_kept == static_cast<uint32_t>(kFrontendFrames)) {
      if (kFrontendFrames * kAudioChannels != kInputSize) return @PU@_ERROR_TENSOR_MISMATCH;
      int8_t* in = interpreter->input(0)->data.int8;
      for (int i = 0; i < kInputSize; ++i) in[i] = Quantize(audio_window[i] * kFeatureScale, kInputScale, kInputZeroPoint);
    }
  }
  if (ready) *ready = audio_kept == static_cast<uint32_t>(kFrontendFrames);
  return @PU@_OK;
#else
  (void)samples, (void)count;
  if (ready) *ready = 0;
  return @PU@_ERROR_NO_AUDIO_FRONTEND;
#endif
}

const uint16_t* @P@_audio_features(size_t* frames) {
#if MODEL_HAS_AUDIO_FRONTEND
  if (frames) *frames = audio_kept;
  return audio_window;
#else
  if (frames) *frames = 0;
  return nullptr;
#endif
}

const char* @P@_status_text(@P@_status status) {
  switch (status) {
    case @PU@_OK:
      return "ok";
    case @PU@_ERROR_ARGUMENT:
      return "a NULL pointer or a wrong element count was passed";
    case @PU@_ERROR_NOT_INITIALIZED:
      return "the model is not set up: call @P@_init() first";
    case @PU@_ERROR_ARENA_ALIGNMENT:
      return "the arena is not 16-byte aligned";
    case @PU@_ERROR_ARENA_TOO_SMALL:
      return "TFLM could not allocate the tensors in the arena: give it @PU@_ARENA_SIZE bytes or more";
    case @PU@_ERROR_SCHEMA_VERSION:
      return "the model's schema version is not the one this TFLM library reads";
    case @PU@_ERROR_OP_REGISTRATION:
      return "an operator of the model could not be registered with TFLM";
    case @PU@_ERROR_TENSOR_MISMATCH:
      return "the model's input or output tensor is not what the library was generated for";
    case @PU@_ERROR_INVOKE:
      return "an operator failed during the inference";
    case @PU@_ERROR_NO_AUDIO_FRONTEND:
      return "the model takes no audio: it has no audio front end";
    case @PU@_ERROR_AUDIO_FRONTEND:
      return "the audio front end could not be set up (no memory for its state?)";
  }
  return "unknown status";
}

@P@_status @P@_init_with_arena(void* arena, size_t arena_size) {
  interpreter = nullptr;
  if (arena == nullptr || arena_size == 0) return @PU@_ERROR_ARGUMENT;
  if (reinterpret_cast<uintptr_t>(arena) % @PU@_ARENA_ALIGNMENT != 0) return @PU@_ERROR_ARENA_ALIGNMENT;
  const tflite::Model* model = tflite::GetModel(g_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return @PU@_ERROR_SCHEMA_VERSION;
  op_resolver = new (resolver_storage) ModelOpResolver();
  if (RegisterModelOps(*op_resolver) != kTfLiteOk) return @PU@_ERROR_OP_REGISTRATION;
  tflite::MicroProfilerInterface* timing = nullptr;
#if @PU@_PROFILE_MAX_OPS > 0
  profiler = profile_clock ? new (profiler_storage) OpProfiler(profile_clock) : nullptr;
  timing = profiler;
#endif
  auto* candidate = new (interpreter_storage) tflite::MicroInterpreter(
      model, *op_resolver, static_cast<uint8_t*>(arena), arena_size, nullptr, timing);
  if (candidate->AllocateTensors() != kTfLiteOk) return @PU@_ERROR_ARENA_TOO_SMALL;
  const TfLiteTensor* input = candidate->input(0);
  const TfLiteTensor* output = candidate->output(0);
  if (input == nullptr || output == nullptr || input->type != kTfLiteInt8 || output->type != kTfLiteInt8 ||
      input->bytes != static_cast<size_t>(kInputSize) || output->bytes != static_cast<size_t>(kOutputSize)) {
    return @PU@_ERROR_TENSOR_MISMATCH;
  }
  interpreter = candidate;
  return @PU@_OK;
}

@P@_status @P@_invoke(void) {
  if (interpreter == nullptr) return @PU@_ERROR_NOT_INITIALIZED;
#if @PU@_PROFILE_MAX_OPS > 0
  if (profiler) profiler->Reset();
#endif
  return interpreter->Invoke() == kTfLiteOk ? @PU@_OK : @PU@_ERROR_INVOKE;
}

@P@_status @P@_run_int8(const int8_t* input, size_t input_count, int8_t* output, size_t output_count) {
  if (input == nullptr || output == nullptr || input_count != static_cast<size_t>(kInputSize) ||
      output_count != static_cast<size_t>(kOutputSize)) {
    return @PU@_ERROR_ARGUMENT;
  }
  if (interpreter == nullptr) return @PU@_ERROR_NOT_INITIALIZED;
  std::memcpy(interpreter->input(0)->data.int8, input, input_count);
  const @P@_status status = @P@_invoke();
  if (status != @PU@_OK) return status;
  std::memcpy(output, interpreter->output(0)->data.int8, output_count);
  return @PU@_OK;
}

@P@_status @P@_run(const float* input, size_t input_count, float* output, size_t output_count) {
  if (input == nullptr || output == nullptr || input_count != static_cast<size_t>(kInputSize) ||
      output_count != static_cast<size_t>(kOutputSize)) {
    return @PU@_ERROR_ARGUMENT;
  }
  if (interpreter == nullptr) return @PU@_ERROR_NOT_INITIALIZED;
  int8_t* in = interpreter->input(0)->data.int8;
  for (size_t i = 0; i < input_count; ++i) in[i] = Quantize(input[i], kInputScale, kInputZeroPoint);
  const @P@_status status = @P@_invoke();
  if (status != @PU@_OK) return status;
  const int8_t* out = interpreter->output(0)->data.int8;
  for (size_t i = 0; i < output_count; ++i) output[i] = (out[i] - kOutputZeroPoint) * kOutputScale;
  return @PU@_OK;
}

int8_t* @P@_input_data(void) { return interpreter ? interpreter->input(0)->data.int8 : nullptr; }

const int8_t* @P@_output_data(void) { return interpreter ? interpreter->output(0)->data.int8 : nullptr; }

size_t @P@_top_index(void) {
  const int8_t* out = @P@_output_data();
  size_t top = 0;
  for (size_t i = 1; out != nullptr && i < static_cast<size_t>(kOutputSize); ++i) {
    if (out[i] > out[top]) top = i;
  }
  return top;
}

size_t @P@_input_size(void) { return kInputSize; }
size_t @P@_output_size(void) { return kOutputSize; }

const int32_t* @P@_input_shape(size_t* rank) {
  if (rank) *rank = sizeof(kInputShape) / sizeof(kInputShape[0]);
  return kInputShape;
}

const int32_t* @P@_output_shape(size_t* rank) {
  if (rank) *rank = sizeof(kOutputShape) / sizeof(kOutputShape[0]);
  return kOutputShape;
}

float @P@_input_scale(void) { return kInputScale; }
int32_t @P@_input_zero_point(void) { return kInputZeroPoint; }
float @P@_output_scale(void) { return kOutputScale; }
int32_t @P@_output_zero_point(void) { return kOutputZeroPoint; }

size_t @P@_label_count(void) { return kLabelCount; }

const char* @P@_label(size_t index) { return index < static_cast<size_t>(kLabelCount) ? kLabels[index] : nullptr; }

size_t @P@_arena_size(void) { return kTensorArenaSize; }

size_t @P@_arena_used(void) { return interpreter ? interpreter->arena_used_bytes() : 0; }

const char* @P@_model_name(void) { return MODEL_NAME; }
const char* @P@_model_hash(void) { return MODEL_HASH; }
const char* @P@_model_id(void) { return MODEL_ID; }

const int8_t* @P@_sample_input(void) { return kSampleInput; }
const int8_t* @P@_sample_expected_output(void) { return kSampleExpectedOutput; }
const char* @P@_sample_label(void) { return SAMPLE_LABEL; }

void @P@_set_profile_clock(uint32_t (*micros)(void)) { profile_clock = micros; }

size_t @P@_profile_count(void) {
#if @PU@_PROFILE_MAX_OPS > 0
  return profiler ? profiler->count() : 0;
#else
  return 0;
#endif
}

void @P@_profile_entry(size_t index, const char** op, uint32_t* us) {
  const char* name = "";
  uint32_t time = 0;
#if @PU@_PROFILE_MAX_OPS > 0
  if (profiler && index < profiler->count()) {
    name = profiler->tag(index);
    time = profiler->us(index);
  }
#else
  (void)index;
#endif
  if (op) *op = name;
  if (us) *us = time;
}

}  // extern "C"
