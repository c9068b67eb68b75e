// Zephyr port: the benchmark harness (MLPerf Tiny serial protocol, docs/serial-protocol.md) on the console UART
// (received by interrupt into a ring buffer, so an xdb frame arriving back to back at 921,600 baud is not lost
// while the harness works; written by polling), timed by the core's DWT cycle counter where it has one (the
// kernel's cycle counter otherwise, and under QEMU), with the TFLM backend. At boot it runs the model once on the
// generated test sample and prints the prediction, the latency and the arena TFLM really used against its size.
// The timestamp pin is the devicetree alias mlperf-timestamp, which the rendered app.overlay points at the board
// file's [energy] timestamp_gpio; EE_ENERGY_MODE=1 builds MLPerf Tiny's energy mode (timestamps as low pulses on it,
// the console at 9600 baud).
#include <zephyr/device.h>
#include <zephyr/drivers/gpio.h>
#include <zephyr/drivers/uart.h>
#include <zephyr/kernel.h>
#include <zephyr/sys/ring_buffer.h>
#if EE_CLOCK_DWT
#include <cmsis_core.h>
#endif

#include <cstdio>

#include "cycle_clock.h"
#include "ee_core.h"
#include "model_runner.h"
#include "tflm_backend.h"

namespace {

const struct device* const kConsole = DEVICE_DT_GET(DT_CHOSEN(zephyr_console));

#if EE_TIMESTAMP_PIN
const struct gpio_dt_spec kTimestampPin = GPIO_DT_SPEC_GET(DT_ALIAS(mlperf_timestamp), gpios);

void PinWrite(int level) { gpio_pin_set_dt(&kTimestampPin, level); }
constexpr void (*kPin)(int) = PinWrite;
#else
constexpr void (*kPin)(int) = nullptr;  // the board file names no [energy] timestamp pin
#endif

// Static and aligned: the arena is sized by mcu-deploy for this model and the board's kernels.
alignas(16) uint8_t tensor_arena[model_runner::kArenaSize];

// Bytes received by the UART interrupt, waiting for the harness: one whole default xdb frame.
RING_BUF_DECLARE(rx_ring, 4096);
K_SEM_DEFINE(rx_ready, 0, 1);

void OnUart(const struct device* dev, void*) {
  while (uart_irq_update(dev) && uart_irq_rx_ready(dev)) {
    uint8_t chunk[32];
    const int n = uart_fifo_read(dev, chunk, sizeof(chunk));
    if (n <= 0) break;
    ring_buf_put(&rx_ring, chunk, static_cast<uint32_t>(n));  // a full ring drops bytes; the frame's CRC says so
    k_sem_give(&rx_ready);
  }
}

void ConsoleWrite(const char* text, size_t len) {
  for (size_t i = 0; i < len; ++i) uart_poll_out(kConsole, static_cast<unsigned char>(text[i]));
}

uint32_t console_baud = 0;

// xbaud: the reply at the old rate leaves the wire first (two characters' time after the last poll_out), then
// the UART is reconfigured. Drivers without runtime configuration refuse, and the harness stays at its rate.
int SetBaud(uint32_t baud) {
  struct uart_config config;
  if (uart_config_get(kConsole, &config) != 0) return -1;
  if (console_baud > 0) k_busy_wait(20000000u / console_baud + 100u);
  config.baudrate = baud;
  if (uart_configure(kConsole, &config) != 0) return -1;
  console_baud = baud;
  return 0;
}

#if EE_CLOCK_DWT
// Microseconds from the core's DWT cycle counter at the CPU clock (the kernel's cycle counter can be far coarser:
// 32,768 Hz on the nRF52840).
uint32_t Micros() { return static_cast<uint32_t>(cycle_clock_extend(DWT->CYCCNT) / EE_CPU_MHZ); }

void StartClock() {
  CoreDebug->DEMCR |= CoreDebug_DEMCR_TRCENA_Msk;
  DWT->CYCCNT = 0;
  DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk;
}
#else
// Microseconds from the kernel's 32-bit hardware cycle counter (under QEMU -icount it counts instructions).
uint32_t Micros() { return static_cast<uint32_t>(k_cyc_to_us_floor64(cycle_clock_extend(k_cycle_get_32()))); }

void StartClock() {}
#endif

void Print(const char* text) { ConsoleWrite(text, __builtin_strlen(text)); }

[[noreturn]] void Halt(const char* reason) {
  char line[160];
  snprintf(line, sizeof(line), "e-[%s]\r\n", reason);
  for (;;) {
    Print(line);
    k_sleep(K_SECONDS(1));
  }
}

}  // namespace

int main(void) {
  if (!device_is_ready(kConsole)) {
    for (;;) k_sleep(K_SECONDS(1));  // nowhere to say it
  }
  StartClock();
#if EE_TIMESTAMP_PIN
  if (!gpio_is_ready_dt(&kTimestampPin) || gpio_pin_configure_dt(&kTimestampPin, GPIO_OUTPUT_INACTIVE) != 0) {
    Halt("the timestamp pin (devicetree alias mlperf-timestamp, app.overlay) is not ready");
  }
#endif
  if (!model_runner::Setup(tensor_arena, model_runner::kArenaSize, Micros)) {
    char reason[96];
    model_runner::SetupFailureReason(reason, sizeof(reason));
    Halt(reason);
  }
  char line[200];
  ConsoleWrite(line, model_runner::SelfTestLine(line, sizeof(line), Micros));

  struct uart_config config;
  if (uart_config_get(kConsole, &config) == 0) console_baud = config.baudrate;
#if EE_ENERGY_MODE
  SetBaud(9600);  // MLPerf Tiny's energy-mode rate, the interface board's link to the DUT
#endif
  uart_irq_callback_user_data_set(kConsole, OnUart, nullptr);
  uart_irq_rx_enable(kConsole);

  static ee_ctx_t ctx;
  static const ee_port_t port = {ConsoleWrite, Micros, "@PLATFORM@", SetBaud, console_baud, kPin, EE_ENERGY_MODE};
  ee_init(&ctx, &port, TflmBackend());
  for (;;) {
    uint8_t received[64];
    const uint32_t n = ring_buf_get(&rx_ring, received, sizeof(received));
    for (uint32_t i = 0; i < n; ++i) ee_feed(&ctx, static_cast<char>(received[i]));
    if (n == 0 && k_sem_take(&rx_ready, K_MSEC(5)) != 0) ee_tick(&ctx);  // 5 ms without a byte
  }
  return 0;
}
