/* STAND-IN (see ../../README.md): printk, which the exported Zephyr example's main.c calls. */
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
void printk(const char *fmt, ...);
#ifdef __cplusplus
}
#endif
