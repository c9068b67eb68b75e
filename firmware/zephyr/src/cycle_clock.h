/* A 32-bit cycle counter extended to 64 bits across its wraps, never stepping back (C99 and C++). The Zephyr
 * harness (main.cc) and the exported Zephyr example (src/main.c) time with it: k_cycle_get_32() wraps every
 * 2^32 cycles (172 s at QEMU mps2/an386's 25 MHz, 67 s at 64 MHz), and microseconds taken from the raw 32-bit count
 * fall back to 0 there instead of going on, so a time measured across the wrap came out wrong. Only a fall of more
 * than half the range is a wrap; a smaller one (a counter read around its reload before the kernel accounted for
 * it) holds the last value instead of reading as a wrap, which would leap 2^32 cycles ahead. Call it at least once
 * per half wrap (both callers read the clock far more often). Not thread-safe: one caller context. */
#ifndef MCU_DEPLOY_CYCLE_CLOCK_H
#define MCU_DEPLOY_CYCLE_CLOCK_H

#include <stdint.h>

static inline uint64_t cycle_clock_extend(uint32_t now) {
  static uint32_t last = 0;
  static uint64_t high = 0;
  if (now < last) {
    if (last - now > 0x80000000u) {
      high += (uint64_t)1 << 32;
    } else {
      now = last;
    }
  }
  last = now;
  return high + now;
}

#endif
