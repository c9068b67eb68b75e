// Example Arduino sketch (rendered by mcu-deploy): runs each exported model on its built-in test sample and prints
// the class, the time (micros()) and the arena used on Serial.
#include "example_models.h"

static uint32_t Micros(void) { return static_cast<uint32_t>(micros()); }

void setup() {
  Serial.begin(115200);
  const unsigned long start = millis();
  while (!Serial && millis() - start < 3000) {
  }
  static example_result results[EXAMPLE_MODEL_COUNT];
  char line[256];
  const size_t good = example_run_all(Micros, results);
  for (size_t i = 0; i < EXAMPLE_MODEL_COUNT; ++i) {
    example_line(&results[i], line, sizeof(line));
    Serial.println(line);
  }
  Serial.print(static_cast<unsigned>(good));
  Serial.println(" model(s) ran and matched the host");
}

void loop() {}
