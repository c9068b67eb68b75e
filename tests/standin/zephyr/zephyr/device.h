/* STAND-IN (see ../README.md): zephyr/device.h as firmware/zephyr/src/main.cc uses it. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
struct device {
  const char *name;
};
extern const struct device __standin_chosen_console;
#define DT_CHOSEN(prop) prop
#define DEVICE_DT_GET(node) (&__standin_chosen_console)
#ifdef __cplusplus
extern "C" {
#endif
bool device_is_ready(const struct device *dev);
#ifdef __cplusplus
}
#endif
