/* @NAME@: the model "@MODEL@" as a library (C API), rendered by mcu-deploy from firmware/library/model.h.
 * Callable from C (C99) and C++. Every symbol starts with @P@_ / @PU@_, so libraries of several models link into
 * one firmware. The implementation runs TensorFlow Lite Micro and prints nothing.
 *
 * Arenas. Each library has its own state and, for @P@_init(), its own static arena of @PU@_ARENA_SIZE bytes (the
 * exact size mcu-deploy computed for the board's kernels). Two models may instead share ONE buffer of the larger
 * size when they run one at a time: the arena holds a model's tensors between runs, so call
 * @P@_init_with_arena(buffer, size) again before running @NAME@ after another model used the buffer (an init costs
 * one AllocateTensors(), no inference). Not thread-safe: call one library from one thread at a time.
 */
#ifndef @PU@_H_
#define @PU@_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define @PU@_INPUT_SIZE @INPUT_SIZE@u    /* input elements */
#define @PU@_OUTPUT_SIZE @OUTPUT_SIZE@u  /* output elements */
#define @PU@_ARENA_SIZE @ARENA_SIZE@u    /* bytes, for this model on board @BOARD@ (@KERNELS@ kernels) */
#define @PU@_ARENA_ALIGNMENT 16u
#define @PU@_LABEL_COUNT @LABEL_COUNT@u

typedef enum {
  @PU@_OK = 0,
  @PU@_ERROR_ARGUMENT = 1,          /* a NULL pointer or a wrong element count */
  @PU@_ERROR_NOT_INITIALIZED = 2,   /* @P@_init() or @P@_init_with_arena() has not succeeded */
  @PU@_ERROR_ARENA_ALIGNMENT = 3,   /* the arena is not 16-byte aligned */
  @PU@_ERROR_ARENA_TOO_SMALL = 4,   /* TFLM could not allocate the tensors in the arena */
  @PU@_ERROR_SCHEMA_VERSION = 5,    /* the model's schema version is not the TFLM library's */
  @PU@_ERROR_OP_REGISTRATION = 6,   /* an operator could not be registered */
  @PU@_ERROR_TENSOR_MISMATCH = 7,   /* the tensors are not the int8 input/output this library was made for */
  @PU@_ERROR_INVOKE = 8,            /* an operator failed during the inference */
  @PU@_ERROR_NO_AUDIO_FRONTEND = 9, /* the model takes no audio (@PU@_HAS_AUDIO_FRONTEND is 0) */
  @PU@_ERROR_AUDIO_FRONTEND = 10    /* the audio front end could not be set up (no memory for its state) */
} @P@_status;

/* A one-line English text for a status (never NULL). */
const char *@P@_status_text(@P@_status status);

/* Sets the model up in the library's static arena (@PU@_ARENA_SIZE bytes). */
@P@_status @P@_init(void);
/* Sets the model up in a caller's arena (16-byte aligned, at least @PU@_ARENA_SIZE bytes advised). */
@P@_status @P@_init_with_arena(void *arena, size_t arena_size);

/* Runs the model on float input: quantized with the input's scale and zero point, the output dequantized with
 * the output's. `input_count` must be @PU@_INPUT_SIZE and `output_count` @PU@_OUTPUT_SIZE. */
@P@_status @P@_run(const float *input, size_t input_count, float *output, size_t output_count);
/* Runs the model on raw int8 input and gives the raw int8 output (the quantized values). */
@P@_status @P@_run_int8(const int8_t *input, size_t input_count, int8_t *output, size_t output_count);

/* Zero-copy use: write @PU@_INPUT_SIZE values into @P@_input_data(), call @P@_invoke(), read @P@_output_data().
 * Both are NULL before a successful init. */
int8_t *@P@_input_data(void);
@P@_status @P@_invoke(void);
const int8_t *@P@_output_data(void);
/* The index of the largest output of the last run (the class of a classifier). */
size_t @P@_top_index(void);

/* The audio front end of a model trained on audio (@PU@_HAS_AUDIO_FRONTEND 1): TFLM's microfrontend configured as
 * training configured it (the @P@_model_settings.h kFrontend* settings), so the device computes the features
 * training used, bit for bit. Compile TFLM's microfrontend sources in with the library (see the README).
 * Stream 16-bit mono PCM at @PU@_AUDIO_SAMPLE_RATE Hz, @PU@_AUDIO_STRIDE_SAMPLES samples (one stride) a call:
 * @P@_audio_feed() runs the front end and, when a feature frame is due, slides it into the model's input. Once
 * @PU@_AUDIO_FRAMES frames are in, `*ready` is 1 and @P@_invoke() (then @P@_top_index()) classifies the last
 * window; it stays 1 for every later frame. The front end's state is allocated (malloc) by its first call. Call
 * after init; @P@_audio_reset() starts from silence. Without a front end they return
 * @PU@_ERROR_NO_AUDIO_FRONTEND. */
#define @PU@_HAS_AUDIO_FRONTEND @HAS_AUDIO@
#define @PU@_AUDIO_SAMPLE_RATE @AUDIO_SAMPLE_RATE@u
#define @PU@_AUDIO_STRIDE_SAMPLES @AUDIO_STRIDE_SAMPLES@u
#define @PU@_AUDIO_FRAMES @AUDIO_FRAMES@u        /* feature frames per model input */
#define @PU@_AUDIO_CHANNELS @AUDIO_CHANNELS@u      /* features per frame (mel channels averaged in groups) */
#define @PU@_AUDIO_MEL_CHANNELS @AUDIO_MEL_CHANNELS@u  /* the microfrontend's channels per frame */
@P@_status @P@_audio_reset(void);
/* `count` must be @PU@_AUDIO_STRIDE_SAMPLES; `*ready` (may be NULL): the input holds a whole window. */
@P@_status @P@_audio_feed(const int16_t *samples, size_t count, int *ready);
/* The window's features (@PU@_AUDIO_FRAMES x @PU@_AUDIO_CHANNELS uint16, oldest frame first) and how many frames
 * are in (`*frames`, may be NULL); NULL without a front end. */
const uint16_t *@P@_audio_features(size_t *frames);
/* The microfrontend alone, for a caller that pools itself (the benchmark harness): one stride in, and, when a frame
 * is out, `*produced` 1 and @PU@_AUDIO_MEL_CHANNELS values in `mel`. Shares the state @P@_audio_reset() resets;
 * use it or @P@_audio_feed() between two resets, not both. */
@P@_status @P@_audio_frame(const int16_t *samples, size_t count, uint16_t *mel, int *produced);

/* Sizes (elements), shapes (`*rank` dimensions) and quantization of the input and output. */
size_t @P@_input_size(void);
size_t @P@_output_size(void);
const int32_t *@P@_input_shape(size_t *rank);
const int32_t *@P@_output_shape(size_t *rank);
float @P@_input_scale(void);
int32_t @P@_input_zero_point(void);
float @P@_output_scale(void);
int32_t @P@_output_zero_point(void);

/* Class labels: @P@_label(i) for i < @P@_label_count(), NULL otherwise. */
size_t @P@_label_count(void);
const char *@P@_label(size_t index);

/* The arena this model needs (@PU@_ARENA_SIZE) and the bytes TFLM really used after init (0 before). */
size_t @P@_arena_size(void);
size_t @P@_arena_used(void);

/* The model's name and a hash of its .tflite (to tell builds apart). */
const char *@P@_model_name(void);
const char *@P@_model_hash(void);
/* What the benchmark harness reports in `profile` (MLPerf Tiny's id for its reference models, else the name). */
const char *@P@_model_id(void);

/* The built-in test sample (one quantized test input), the raw output the host TFLM runtime gave for it, and
 * its true label ("" when unknown). */
const int8_t *@P@_sample_input(void);
const int8_t *@P@_sample_expected_output(void);
const char *@P@_sample_label(void);

/* Per-operator timing, only when the library is compiled with @PU@_PROFILE_MAX_OPS > 0 (default 0: no cost).
 * Set a free-running microsecond clock before init; every inference then times each operator.
 * @P@_profile_count() is 0 without it. */
void @P@_set_profile_clock(uint32_t (*micros)(void));
size_t @P@_profile_count(void);
void @P@_profile_entry(size_t index, const char **op, uint32_t *us);

#ifdef __cplusplus
}
#endif

#endif /* @PU@_H_ */
