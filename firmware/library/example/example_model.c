/* Runs the model library @P@ on its built-in test sample (rendered by mcu-deploy from
 * firmware/library/example/example_model.c, once per model of the example). */
static void run_@P@(uint32_t (*micros)(void), example_result *r) {
  static int8_t output[@PU@_OUTPUT_SIZE];
#if EXAMPLE_SHARED_ARENA
  /* one buffer for all models, run one at a time: init again before each run */
  @P@_status status = @P@_init_with_arena(shared_arena(), EXAMPLE_SHARED_ARENA_SIZE);
#else
  @P@_status status = @P@_init(); /* the library's own static arena of @PU@_ARENA_SIZE bytes */
#endif
  r->name = "@P@";
  r->arena_size = @P@_arena_size();
  if (status == @PU@_OK) {
    const uint32_t start = micros();
    status = @P@_run_int8(@P@_sample_input(), @PU@_INPUT_SIZE, output, @PU@_OUTPUT_SIZE);
    r->us = micros() - start;
  }
  r->ok = status == @PU@_OK;
  r->status = @P@_status_text(status);
  if (!r->ok) return;
  r->index = @P@_top_index();
  r->label = @P@_label(r->index) ? @P@_label(r->index) : "?";
  r->expected = @P@_sample_label();
  r->score = (output[r->index] - @P@_output_zero_point()) * @P@_output_scale();
  r->matches_host = memcmp(output, @P@_sample_expected_output(), @PU@_OUTPUT_SIZE) == 0;
  r->arena_used = @P@_arena_used();
#if @PU@_INPUT_SIZE <= 4096
  { /* the float API on the same sample: the library quantizes the input and dequantizes the output */
    static float input_f[@PU@_INPUT_SIZE], output_f[@PU@_OUTPUT_SIZE];
    size_t i, top = 0;
    for (i = 0; i < @PU@_INPUT_SIZE; ++i) {
      input_f[i] = (@P@_sample_input()[i] - @P@_input_zero_point()) * @P@_input_scale();
    }
    if (@P@_run(input_f, @PU@_INPUT_SIZE, output_f, @PU@_OUTPUT_SIZE) == @PU@_OK) {
      for (i = 1; i < @PU@_OUTPUT_SIZE; ++i) {
        if (output_f[i] > output_f[top]) top = i;
      }
      r->float_run = 1;
      r->float_agrees = top == r->index;
    }
  }
#endif
}
