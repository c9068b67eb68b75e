// STAND-IN (see tests/standin/tflm/README.md): TfLiteStatus, TfLiteType and the TfLiteTensor fields the library reads.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum { kTfLiteNoType = 0, kTfLiteFloat32 = 1, kTfLiteInt32 = 2, kTfLiteUInt8 = 3, kTfLiteInt8 = 9 } TfLiteType;
typedef union TfLitePtrUnion {
  int8_t* int8;
  void* data;
} TfLitePtrUnion;
typedef struct TfLiteTensor {
  TfLiteType type;
  TfLitePtrUnion data;
  size_t bytes;
} TfLiteTensor;
