// The benchmark harness's view of the model: a thin user of the model library's C API (model_library.h reaches
// the library rendered from firmware/library/ whatever its name), so the harness times exactly what a user ships.
// Independent of any board SDK: a port supplies the arena and a clock.
#ifndef MODEL_RUNNER_H_
#define MODEL_RUNNER_H_

#include <cstddef>
#include <cstdint>

#include "model_library.h"

namespace model_runner {

struct Result {
  int top_index;          // argmax of the output (class), or 0 for a single regression output
  float top_value;        // the dequantized output at top_index
  bool matches_expected;  // raw int8 output equals what the host TFLM runtime gave for the sample
};

// A free-running microsecond clock (it may wrap at 2^32), for the per-operator profile.
using Clock = uint32_t (*)();

// The arena the model needs (the library's ARENA_SIZE), for a port that allocates it.
constexpr size_t kArenaSize = MODEL_LIB_ARENA_SIZE;

// Sets the model up in `arena` (16-byte aligned, kArenaSize bytes) through the library's init_with_arena. Returns
// false when the model, the op resolver or the arena does not work (SetupFailureReason() says which). With a
// clock, every Invoke() also times each operator, read back with ProfileCount() and ProfileEntry().
bool Setup(uint8_t* arena, size_t arena_size, Clock clock = nullptr);

// Operators timed in the last Invoke() (0 without a clock), and operator i's name and microseconds.
size_t ProfileCount();
void ProfileEntry(size_t i, const char** op, uint32_t* us);

// Bytes of the arena TFLM really used, to compare with the host's prediction (kArenaSize).
size_t ArenaUsedBytes();

// Copies `input` (the model's input size in int8 values) into the input tensor.
void LoadInput(const int8_t* input);

// Runs the model once on the loaded input.
bool Invoke();

// LoadInput + Invoke, then the top class and whether the output equals the host's for the sample.
bool Run(const int8_t* input, Result* result);

// The raw int8 output of the last Run().
const int8_t* Output();

// Runs the built-in test sample once, timed with `clock`, and writes the boot self-test line every port prints
// (prediction, whether it equals the host's, latency, arena used against its size) into `line`, "\r\n" ended.
// Returns its length.
size_t SelfTestLine(char* line, size_t size, Clock clock);

// Why Setup() failed, for a port's halt message: writes a NUL-terminated text naming the arena's size and the
// library's status text into `reason`.
void SetupFailureReason(char* reason, size_t size);

}  // namespace model_runner

#endif  // MODEL_RUNNER_H_
