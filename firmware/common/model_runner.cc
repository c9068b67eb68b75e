#include "model_runner.h"

#include <cstdio>
#include <cstring>

namespace model_runner {
namespace {

// The status of the last Setup() (decltype: the library's status enum; unevaluated, links nothing).
decltype(MODEL_LIB(init)()) setup_status = MODEL_LIB_OK;

}  // namespace

bool Setup(uint8_t* arena, size_t arena_size, Clock clock) {
  MODEL_LIB(set_profile_clock)(clock);
  setup_status = MODEL_LIB(init_with_arena)(arena, arena_size);
  return setup_status == MODEL_LIB_OK;
}

size_t ArenaUsedBytes() { return MODEL_LIB(arena_used)(); }

const int8_t* Output() { return MODEL_LIB(output_data)(); }

void LoadInput(const int8_t* input) { std::memcpy(MODEL_LIB(input_data)(), input, MODEL_LIB_INPUT_SIZE); }

size_t ProfileCount() { return MODEL_LIB(profile_count)(); }

void ProfileEntry(size_t i, const char** op, uint32_t* us) { MODEL_LIB(profile_entry)(i, op, us); }

bool Invoke() { return MODEL_LIB(invoke)() == MODEL_LIB_OK; }

bool Run(const int8_t* input, Result* result) {
  static int8_t output[MODEL_LIB_OUTPUT_SIZE];
  if (MODEL_LIB(run_int8)(input, MODEL_LIB_INPUT_SIZE, output, MODEL_LIB_OUTPUT_SIZE) != MODEL_LIB_OK) return false;
  const size_t top = MODEL_LIB(top_index)();
  result->top_index = static_cast<int>(top);
  result->top_value = (output[top] - MODEL_LIB(output_zero_point)()) * MODEL_LIB(output_scale)();
  result->matches_expected = std::memcmp(output, MODEL_LIB(sample_expected_output)(), MODEL_LIB_OUTPUT_SIZE) == 0;
  return true;
}

size_t SelfTestLine(char* line, size_t size, Clock clock) {
  Result result;
  const uint32_t start = clock();
  const bool ok = Run(MODEL_LIB(sample_input)(), &result);
  const uint32_t elapsed_us = clock() - start;
  const char* label = ok ? MODEL_LIB(label)(static_cast<size_t>(result.top_index)) : nullptr;
  const int n = snprintf(line, size,
                         "m-x-selftest-[model=%s prediction=%s expected=%s matches_host=%s latency_us=%lu"
                         " arena_used_bytes=%u arena_bytes=%u]\r\n",
                         MODEL_LIB(model_name)(), label ? label : "?", MODEL_LIB(sample_label)(),
                         ok && result.matches_expected ? "yes" : "no", static_cast<unsigned long>(elapsed_us),
                         static_cast<unsigned>(ArenaUsedBytes()), static_cast<unsigned>(MODEL_LIB(arena_size)()));
  if (n < 0) return 0;
  return static_cast<size_t>(n) < size ? static_cast<size_t>(n) : size - 1;
}

void SetupFailureReason(char* reason, size_t size) {
  snprintf(reason, size, "model setup failed in a %u-byte arena: %s", static_cast<unsigned>(MODEL_LIB(arena_size)()),
           MODEL_LIB(status_text)(setup_status));
}

}  // namespace model_runner
