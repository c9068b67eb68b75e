/* STAND-IN (see ../README.md): the kernel calls firmware/zephyr/src/main.cc makes. */
#pragma once
#include <stdint.h>
typedef struct {
  int64_t ticks;
} k_timeout_t;
#define K_MSEC(ms) ((k_timeout_t){(int64_t)(ms)})
#define K_SECONDS(s) K_MSEC((s) * 1000)
struct k_sem {
  unsigned int count, limit;
};
#define K_SEM_DEFINE(name, initial, max) struct k_sem name = {initial, max}
#ifdef __cplusplus
extern "C" {
#endif
uint32_t k_cycle_get_32(void);
uint64_t k_cyc_to_us_floor64(uint64_t cycles);
int32_t k_sleep(k_timeout_t timeout);
void k_busy_wait(uint32_t usec_to_wait);
int k_sem_take(struct k_sem *sem, k_timeout_t timeout);
void k_sem_give(struct k_sem *sem);
#ifdef __cplusplus
}
#endif
