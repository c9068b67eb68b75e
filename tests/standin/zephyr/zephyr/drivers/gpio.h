/* STAND-IN (see ../../README.md): the GPIO driver API firmware/zephyr/src/main.cc uses for the timestamp pin, from
 * Zephyr 4.1's documented signatures. DT_ALIAS and GPIO_DT_SPEC_GET resolve to one declared spec here; in Zephyr they
 * read the devicetree the rendered app.overlay extends. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <zephyr/device.h>
typedef uint8_t gpio_pin_t;
typedef uint16_t gpio_dt_flags_t;
typedef uint32_t gpio_flags_t;
struct gpio_dt_spec {
  const struct device *port;
  gpio_pin_t pin;
  gpio_dt_flags_t dt_flags;
};
#define GPIO_OUTPUT_INACTIVE ((1u << 17) | (1u << 19))
#define DT_ALIAS(alias) alias
#define GPIO_DT_SPEC_GET(node, prop) {&__standin_gpio_port, 0, 0}
extern const struct device __standin_gpio_port;
#ifdef __cplusplus
extern "C" {
#endif
bool gpio_is_ready_dt(const struct gpio_dt_spec *spec);
int gpio_pin_configure_dt(const struct gpio_dt_spec *spec, gpio_flags_t extra_flags);
int gpio_pin_set_dt(const struct gpio_dt_spec *spec, int value);
#ifdef __cplusplus
}
#endif
