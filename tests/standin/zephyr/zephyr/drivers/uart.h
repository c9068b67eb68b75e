/* STAND-IN (see ../../README.md): the UART driver API firmware/zephyr/src/main.cc uses. */
#pragma once
#include <stdint.h>
#include <zephyr/device.h>
struct uart_config {
  uint32_t baudrate;
  uint8_t parity, stop_bits, data_bits, flow_ctrl;
};
typedef void (*uart_irq_callback_user_data_t)(const struct device *dev, void *user_data);
#ifdef __cplusplus
extern "C" {
#endif
void uart_poll_out(const struct device *dev, unsigned char out_char);
int uart_config_get(const struct device *dev, struct uart_config *cfg);
int uart_configure(const struct device *dev, const struct uart_config *cfg);
int uart_irq_callback_user_data_set(const struct device *dev, uart_irq_callback_user_data_t cb, void *user_data);
void uart_irq_rx_enable(const struct device *dev);
int uart_irq_update(const struct device *dev);
int uart_irq_rx_ready(const struct device *dev);
int uart_fifo_read(const struct device *dev, uint8_t *rx_data, const int size);
#ifdef __cplusplus
}
#endif
