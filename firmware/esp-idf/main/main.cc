// ESP-IDF port: the benchmark harness (MLPerf Tiny serial protocol, docs/serial-protocol.md) on the console port
// the board file names (the UART, or the chip's USB Serial/JTAG), with the TFLM backend. At boot it also runs the
// model once on the generated test sample and prints the prediction, the latency and the arena TFLM really used
// against the arena it was given, so a plain serial monitor shows the model working.
// The timestamp pin (EE_TIMESTAMP_GPIO, from the board file's [energy] timestamp_gpio) is high while the timed loop
// runs; built with EE_ENERGY_MODE=1 the harness serves MLPerf Tiny's energy mode (timestamps as low pulses).
#include <cstdio>

#include "driver/gpio.h"
#include "ee_core.h"
#include "esp_heap_caps.h"
#include "esp_idf_version.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "model_runner.h"
#include "sdkconfig.h"
#include "tflm_backend.h"

#if CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG
#include "driver/usb_serial_jtag.h"
#if ESP_IDF_VERSION >= ESP_IDF_VERSION_VAL(5, 3, 0)
#include "driver/usb_serial_jtag_vfs.h"
#else
#include "esp_vfs_usb_serial_jtag.h"
#endif
#else
#include "driver/uart.h"
#endif

namespace {

#if CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG
constexpr const char* kConsoleName = "USB Serial/JTAG";

esp_err_t ConsoleInstall() {
  usb_serial_jtag_driver_config_t config = USB_SERIAL_JTAG_DRIVER_CONFIG_DEFAULT();
  const esp_err_t err = usb_serial_jtag_driver_install(&config);
  if (err == ESP_OK) {
    // printf (TFLM's log, this file's messages) must go through the driver now that it owns the port.
#if ESP_IDF_VERSION >= ESP_IDF_VERSION_VAL(5, 3, 0)
    usb_serial_jtag_vfs_use_driver();
#else
    esp_vfs_usb_serial_jtag_use_driver();
#endif
  }
  return err;
}

// A host that is not reading must not stall the harness forever: give up on a write after 100 ms.
void ConsoleWrite(const char* text, size_t len) { usb_serial_jtag_write_bytes(text, len, pdMS_TO_TICKS(100)); }

int ConsoleRead(uint8_t* buffer, size_t size) {
  return usb_serial_jtag_read_bytes(buffer, size, pdMS_TO_TICKS(20));
}

// USB has no baud rate: xbaud is refused and the reader keeps going at full USB speed.
constexpr int (*kSetBaud)(uint32_t) = nullptr;
constexpr uint32_t kBaud = 0;
#else
constexpr uart_port_t kUart = static_cast<uart_port_t>(CONFIG_ESP_CONSOLE_UART_NUM);
constexpr const char* kConsoleName = "UART";

// 4 KB of receive buffer: an xdb frame arrives back to back at up to 921,600 baud.
esp_err_t ConsoleInstall() { return uart_driver_install(kUart, 4096, 0, 0, nullptr, 0); }

void ConsoleWrite(const char* text, size_t len) { uart_write_bytes(kUart, text, len); }

int ConsoleRead(uint8_t* buffer, size_t size) { return uart_read_bytes(kUart, buffer, size, pdMS_TO_TICKS(20)); }

// xbaud: the reply at the old rate leaves the wire first, then the UART changes rate.
int SetBaud(uint32_t baud) {
  uart_wait_tx_done(kUart, pdMS_TO_TICKS(100));
  return uart_set_baudrate(kUart, baud) == ESP_OK ? 0 : -1;
}
constexpr int (*kSetBaud)(uint32_t) = SetBaud;
constexpr uint32_t kBaud = CONFIG_ESP_CONSOLE_UART_BAUDRATE;
#endif

// esp_timer counts microseconds since boot in 64 bits and never steps back; its low 32 bits wrap every 71 minutes,
// which the harness core's differences allow for.
uint32_t Micros() { return static_cast<uint32_t>(esp_timer_get_time()); }

#if EE_TIMESTAMP_GPIO >= 0
constexpr gpio_num_t kTimestampPin = static_cast<gpio_num_t>(EE_TIMESTAMP_GPIO);

void PinWrite(int level) { gpio_set_level(kTimestampPin, level ? 1 : 0); }
constexpr void (*kPin)(int) = PinWrite;
#else
constexpr void (*kPin)(int) = nullptr;  // the board file names no [energy] timestamp pin
#endif

// A fault before the harness can serve: say it once a second, forever, so a monitor opened late still sees it.
[[noreturn]] void Halt(const char* reason) {
  for (;;) {
    printf("e-[%s]\r\n", reason);
    fflush(stdout);
    vTaskDelay(pdMS_TO_TICKS(1000));
  }
}

}  // namespace

extern "C" void app_main(void) {
#if EE_TIMESTAMP_GPIO >= 0
  gpio_reset_pin(kTimestampPin);
  gpio_set_direction(kTimestampPin, GPIO_MODE_OUTPUT);
#endif
  const esp_err_t installed = ConsoleInstall();
  if (installed != ESP_OK) {
    char reason[96];
    snprintf(reason, sizeof(reason), "%s driver install failed: %s", kConsoleName, esp_err_to_name(installed));
    Halt(reason);
  }
  // From the heap, not a static array: the ESP32's statically allocatable DRAM is far smaller than its heap.
  auto* arena = static_cast<uint8_t*>(
      heap_caps_aligned_alloc(16, model_runner::kArenaSize, MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT));
  if (arena == nullptr) {
    char reason[128];
    snprintf(reason, sizeof(reason), "cannot allocate a %u-byte arena: largest free internal block %u bytes",
             static_cast<unsigned>(model_runner::kArenaSize),
             static_cast<unsigned>(heap_caps_get_largest_free_block(MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT)));
    Halt(reason);
  }
  if (!model_runner::Setup(arena, model_runner::kArenaSize, Micros)) {
    // TFLM printed why above (e.g. a kernel's scratch buffer that does not fit the arena).
    char reason[128];
    model_runner::SetupFailureReason(reason, sizeof(reason));
    Halt(reason);
  }
  char line[200];
  ConsoleWrite(line, model_runner::SelfTestLine(line, sizeof(line), Micros));

  static ee_ctx_t ctx;
  static const ee_port_t port = {ConsoleWrite, Micros, "device", kSetBaud, kBaud, kPin, EE_ENERGY_MODE};
  ee_init(&ctx, &port, TflmBackend());
  uint8_t received[64];
  for (;;) {
    const int n = ConsoleRead(received, sizeof(received));
    for (int i = 0; i < n; ++i) ee_feed(&ctx, static_cast<char>(received[i]));
    if (n <= 0) ee_tick(&ctx);  // 20 ms without a byte
  }
}
