// Example Arduino sketch (rendered by mcu-deploy): runs each exported model on its built-in test sample and prints
// the class, the time (micros()) and the arena used on Serial.
#include "example_models.h"

static uint32_t Micros(void) { return static_cast<uint32_t>(micros()); }

// Not `Print`: that is the Arduino API's class (arduino::Print, in scope in every sketch), and the name is ambiguous.
static void PrintLine(const char* line) { Serial.println(line); }

void setup() {
  Serial.begin(115200);
  const unsigned long start = millis();
  while (!Serial && millis() - start < 3000) {
  }
  example_report(Micros, PrintLine);
}

void loop() {}
