#include "model_runner.h"

#include <cstdio>
#include <cstring>
#include <new>

#include "model_data.h"
#include "model_ops.h"
#include "model_settings.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace model_runner {
namespace {

// Times each operator of an inference with the port's clock. TFLM calls BeginEvent/EndEvent around every
// operator's Invoke (ScopedMicroProfiler in the interpreter graph), tagged with the operator's name.
class OpProfiler : public tflite::MicroProfilerInterface {
 public:
  static constexpr size_t kMaxOps = 256;

  explicit OpProfiler(Clock clock) : clock_(clock) {}

  uint32_t BeginEvent(const char* tag) override {
    if (count_ >= kMaxOps) return kMaxOps;
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
  Clock clock_;
  size_t count_ = 0;
  const char* tags_[kMaxOps] = {};
  uint32_t start_[kMaxOps] = {};
  uint32_t us_[kMaxOps] = {};
};

// All constructed in place by Setup(): raw storage means no heap, and no global constructor or destructor
// (bare-metal start-up code need not run them, and nothing registers an exit-time destructor).
alignas(ModelOpResolver) uint8_t resolver_storage[sizeof(ModelOpResolver)];
alignas(tflite::MicroInterpreter) uint8_t interpreter_storage[sizeof(tflite::MicroInterpreter)];
alignas(OpProfiler) uint8_t profiler_storage[sizeof(OpProfiler)];
ModelOpResolver* op_resolver = nullptr;
tflite::MicroInterpreter* interpreter = nullptr;
OpProfiler* profiler = nullptr;

}  // namespace

bool Setup(uint8_t* arena, size_t arena_size, Clock clock) {
  const tflite::Model* model = tflite::GetModel(g_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("model schema version %d, TFLM supports %d", static_cast<int>(model->version()),
                TFLITE_SCHEMA_VERSION);
    return false;
  }
  op_resolver = new (resolver_storage) ModelOpResolver();
  if (RegisterModelOps(*op_resolver) != kTfLiteOk) {
    MicroPrintf("registering the model's %d ops failed", static_cast<int>(kModelOpCount));
    return false;
  }
  profiler = clock ? new (profiler_storage) OpProfiler(clock) : nullptr;
  interpreter = new (interpreter_storage)
      tflite::MicroInterpreter(model, *op_resolver, arena, arena_size, nullptr, profiler);
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors() failed in a %u-byte arena: the optimized kernels may need more scratch; "
                "raise kTensorArenaSize in model_settings.h",
                static_cast<unsigned>(arena_size));
    return false;
  }
  TfLiteTensor* input = interpreter->input(0);
  if (input->type != kTfLiteInt8 || input->bytes != static_cast<size_t>(kInputSize)) {
    MicroPrintf("input tensor is not %d int8 values", kInputSize);
    return false;
  }
  return true;
}

size_t ArenaUsedBytes() { return interpreter ? interpreter->arena_used_bytes() : 0; }

const int8_t* Output() { return interpreter->output(0)->data.int8; }

void LoadInput(const int8_t* input) { std::memcpy(interpreter->input(0)->data.int8, input, kInputSize); }

size_t ProfileCount() { return profiler ? profiler->count() : 0; }

void ProfileEntry(size_t i, const char** op, uint32_t* us) {
  *op = profiler && i < profiler->count() ? profiler->tag(i) : "";
  *us = profiler && i < profiler->count() ? profiler->us(i) : 0;
}

bool Invoke() {
  if (profiler) profiler->Reset();
  if (interpreter->Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke() failed");
    return false;
  }
  return true;
}

bool Run(const int8_t* input, Result* result) {
  LoadInput(input);
  if (!Invoke()) return false;
  const int8_t* output = Output();
  int top = 0;
  for (int i = 1; i < kOutputSize; ++i) {
    if (output[i] > output[top]) top = i;
  }
  result->top_index = top;
  result->top_value = (output[top] - kOutputZeroPoint) * kOutputScale;
  result->matches_expected = std::memcmp(output, kSampleExpectedOutput, kOutputSize) == 0;
  return true;
}

size_t SelfTestLine(char* line, size_t size, Clock clock) {
  Result result;
  const uint32_t start = clock();
  const bool ok = Run(kSampleInput, &result);
  const uint32_t elapsed_us = clock() - start;
  const char* label = ok && result.top_index < kLabelCount ? kLabels[result.top_index] : "?";
  const int n = snprintf(line, size,
                         "m-x-selftest-[model=%s prediction=%s expected=%s matches_host=%s latency_us=%lu"
                         " arena_used_bytes=%u arena_bytes=%u]\r\n",
                         MODEL_NAME, label, SAMPLE_LABEL, ok && result.matches_expected ? "yes" : "no",
                         static_cast<unsigned long>(elapsed_us), static_cast<unsigned>(ArenaUsedBytes()),
                         static_cast<unsigned>(kTensorArenaSize));
  if (n < 0) return 0;
  return static_cast<size_t>(n) < size ? static_cast<size_t>(n) : size - 1;
}

void SetupFailureReason(char* reason, size_t size) {
  snprintf(reason, size, "model setup failed in a %u-byte arena (see TFLM's message above)",
           static_cast<unsigned>(kTensorArenaSize));
}

}  // namespace model_runner
