/* STAND-IN (see README.md): the DWT and CoreDebug registers firmware/zephyr/src/main.cc reads, with the CMSIS
 * names and the Armv7-M addresses (DWT 0xE0001000, DEMCR 0xE000EDFC). */
#pragma once
#include <stdint.h>
typedef struct {
  volatile uint32_t CTRL, CYCCNT;
} DWT_Type;
typedef struct {
  volatile uint32_t DHCSR, DCRSR, DCRDR, DEMCR;
} CoreDebug_Type;
#define DWT ((DWT_Type *)0xE0001000UL)
#define CoreDebug ((CoreDebug_Type *)0xE000EDF0UL)
#define DWT_CTRL_CYCCNTENA_Msk (1UL << 0)
#define CoreDebug_DEMCR_TRCENA_Msk (1UL << 24)
