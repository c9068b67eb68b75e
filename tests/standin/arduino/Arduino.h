/* STAND-IN (see README.md): the Arduino API the rendered sketch uses. */
#pragma once
#include <stddef.h>
#include <stdint.h>
unsigned long micros(void);
unsigned long millis(void);
void delay(unsigned long ms);
class StandInSerial {
 public:
  void begin(unsigned long baud);
  explicit operator bool();
  int available();
  int read();
  size_t write(const uint8_t *buffer, size_t size);
  size_t print(const char *text);
};
extern StandInSerial Serial;
