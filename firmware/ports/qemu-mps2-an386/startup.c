/* Minimal Cortex-M start-up: vector table, .data copy, .bss clear, FPU on (where the image uses one), C++ static
 * constructors, main(). Also used for ARMv6-M (Cortex-M0+) images run on mps2-an385's Cortex-M3. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);
extern int main(void);
void SysTick_Handler(void);

void Reset_Handler(void) {
  uint32_t *src = &_sidata;
  for (uint32_t *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
#if defined(__ARM_FP)
  /* CPACR: full access to CP10 and CP11, the FPU (the image is built for the hard-float ABI). */
  *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
  __asm volatile("dsb\n isb");
#endif
  for (void (**ctor)(void) = __init_array_start; ctor < __init_array_end; ++ctor) (*ctor)();  /* C++ globals */
  main();
  for (;;) {
  }
}

static void Default_Handler(void) {
  for (;;) {
  }
}

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler,  /* SP, reset, NMI, HardFault */
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,              /* MemManage..UsageFault */
    Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler,       /* SVC, DebugMon, PendSV, SysTick */
};
