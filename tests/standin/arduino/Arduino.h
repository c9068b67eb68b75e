/* STAND-IN (see README.md): the Arduino API the rendered sketch uses. */
#pragma once
#include <stddef.h>
#include <stdint.h>
unsigned long micros(void);
unsigned long millis(void);
void delay(unsigned long ms);
#define HIGH 0x1
#define LOW 0x0
#define OUTPUT 0x1
#define D2 2
void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t value);
/* The Arduino API's classes live in namespace arduino, which Arduino.h puts in scope (ArduinoCore-API): a sketch's
 * own `Print` is ambiguous with arduino::Print, as with the real core. */
namespace arduino {
class Print {
 public:
  size_t print(const char *text);
  size_t println(const char *text);
};
}  // namespace arduino
using namespace arduino;
class StandInSerial : public Print {
 public:
  void begin(unsigned long baud);
  explicit operator bool();
  int available();
  int read();
  size_t write(const uint8_t *buffer, size_t size);
  size_t print(const char *text);
};
extern StandInSerial Serial;
extern StandInSerial Serial1;  /* the hardware UART on D0/D1 */
