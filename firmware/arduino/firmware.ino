// Rendered by mcu-deploy (invoke build) for board @BOARD@: an Arduino sketch (FQBN @FQBN@) serving the
// benchmark harness (MLPerf Tiny serial protocol, docs/serial-protocol.md) on Serial, timed by micros(), with the
// TFLM backend from the @LIBRARY@ library (@LIBRARY_VERSION@, Arduino Library Manager).
// Build: arduino-cli compile --fqbn @FQBN@ .     Upload: arduino-cli upload -p PORT --fqbn @FQBN@ .
// At boot it runs the model once on the generated test sample and prints the prediction, the latency and the arena
// TFLM really used against its size.
// The timestamp pin is @TIMESTAMP_PIN@ (the board file's [energy] timestamp_pin): high while the timed loop runs, or in
// MLPerf Tiny's energy mode (EE_ENERGY_MODE @ENERGY_MODE@) low pulses per timestamp, with the harness on the
// hardware UART Serial1 (D0/D1) at 9600 baud, where the interface board is wired.
#include <@LIBRARY_HEADER@>

#include "ee_core.h"
#include "model_runner.h"
#include "tflm_backend.h"

#ifndef EE_ENERGY_MODE
#define EE_ENERGY_MODE @ENERGY_MODE@
#endif
#if EE_ENERGY_MODE
#define CONSOLE Serial1
#define CONSOLE_BAUD 9600
#else
#define CONSOLE Serial
#define CONSOLE_BAUD @BAUD@
#endif
@TIMESTAMP_DEFINE@

namespace {

// Static and aligned: the arena is sized by mcu-deploy for this model and the board's kernels.
alignas(16) uint8_t tensor_arena[model_runner::kArenaSize];

ee_ctx_t ctx;
bool serving = false;
unsigned long last_byte_ms = 0;

void ConsoleWrite(const char* text, size_t len) {
  CONSOLE.write(reinterpret_cast<const uint8_t*>(text), len);
}

// The core's micros(): a hardware microsecond timer on the mbed cores and esp_timer on the ESP32 core, monotonic and
// wrapping at 2^32, which the harness core's differences allow for.

#ifdef TIMESTAMP_PIN
void PinWrite(int level) { digitalWrite(TIMESTAMP_PIN, level ? HIGH : LOW); }
constexpr void (*kPin)(int) = PinWrite;
#else
constexpr void (*kPin)(int) = nullptr;  // the board file names no [energy] timestamp pin
#endif

uint32_t Micros() { return static_cast<uint32_t>(micros()); }

void Halt(const char* reason) {
  for (;;) {
    CONSOLE.print("e-[");
    CONSOLE.print(reason);
    CONSOLE.print("]\r\n");
    delay(1000);
  }
}

}  // namespace

void setup() {
  // Serial is the board's USB CDC port (@CONSOLE_NOTE@): the rate is the host's business, so no xbaud.
#ifdef TIMESTAMP_PIN
  pinMode(TIMESTAMP_PIN, OUTPUT);
  digitalWrite(TIMESTAMP_PIN, LOW);
#endif
  CONSOLE.begin(CONSOLE_BAUD);
  const unsigned long start = millis();
  while (!CONSOLE && millis() - start < 3000) {
  }
  if (!model_runner::Setup(tensor_arena, model_runner::kArenaSize, Micros)) {
    char reason[96];
    model_runner::SetupFailureReason(reason, sizeof(reason));
    Halt(reason);
  }
  char line[200];
  ConsoleWrite(line, model_runner::SelfTestLine(line, sizeof(line), Micros));
  static const ee_port_t port = {ConsoleWrite, Micros, "device", nullptr, 0, kPin, EE_ENERGY_MODE};
  ee_init(&ctx, &port, TflmBackend());
  serving = true;
}

void loop() {
  if (!serving) return;
  bool got = false;
  while (CONSOLE.available() > 0) {
    ee_feed(&ctx, static_cast<char>(CONSOLE.read()));
    got = true;
  }
  if (got) {
    last_byte_ms = millis();
  } else if (millis() - last_byte_ms >= 5) {
    ee_tick(&ctx);
    last_byte_ms = millis();
  }
}
