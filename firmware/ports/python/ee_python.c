/* The harness core as a host shared library, for `invoke emulate`: Python (pipeline/hil/emulate.py) supplies the
 * port and a backend that runs the TFLM host runtime, so the emulated device answers with the very parser and
 * replies of the firmware. Built with -DEE_VENDOR/-DEE_FW_NAME saying EMULATED. */
#include <stdlib.h>

#include "ee_core.h"

/* The context's size, so Python can allocate it without knowing its layout. */
size_t ee_ctx_size(void) { return sizeof(ee_ctx_t); }

/* Feeds a run of received characters. */
void ee_feed_bytes(ee_ctx_t *ctx, const char *data, size_t len) {
  for (size_t i = 0; i < len; ++i) ee_feed(ctx, data[i]);
}
