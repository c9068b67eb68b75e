// STAND-IN (see tests/standin/tflm/README.md): the op resolver, with every Add* method the generated model_ops.h
// may call (pipeline/target/tflm_ops.py RESOLVER_METHODS), declared only.
#pragma once
#include "tensorflow/lite/c/common.h"

namespace tflite {
class MicroOpResolver {
 public:
  virtual ~MicroOpResolver() {}
};

template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
  TfLiteStatus AddAbs();
  TfLiteStatus AddAdd();
  TfLiteStatus AddAddN();
  TfLiteStatus AddArgMax();
  TfLiteStatus AddArgMin();
  TfLiteStatus AddAssignVariable();
  TfLiteStatus AddAveragePool2D();
  TfLiteStatus AddBatchMatMul();
  TfLiteStatus AddBatchToSpaceNd();
  TfLiteStatus AddBroadcastArgs();
  TfLiteStatus AddBroadcastTo();
  TfLiteStatus AddCallOnce();
  TfLiteStatus AddCast();
  TfLiteStatus AddCeil();
  TfLiteStatus AddConcatenation();
  TfLiteStatus AddConv2D();
  TfLiteStatus AddCos();
  TfLiteStatus AddCumSum();
  TfLiteStatus AddDepthToSpace();
  TfLiteStatus AddDepthwiseConv2D();
  TfLiteStatus AddDequantize();
  TfLiteStatus AddDiv();
  TfLiteStatus AddDynamicUpdateSlice();
  TfLiteStatus AddElu();
  TfLiteStatus AddEmbeddingLookup();
  TfLiteStatus AddEqual();
  TfLiteStatus AddExp();
  TfLiteStatus AddExpandDims();
  TfLiteStatus AddFill();
  TfLiteStatus AddFloor();
  TfLiteStatus AddFloorDiv();
  TfLiteStatus AddFloorMod();
  TfLiteStatus AddFullyConnected();
  TfLiteStatus AddGather();
  TfLiteStatus AddGatherNd();
  TfLiteStatus AddGreater();
  TfLiteStatus AddGreaterEqual();
  TfLiteStatus AddHardSwish();
  TfLiteStatus AddIf();
  TfLiteStatus AddL2Normalization();
  TfLiteStatus AddL2Pool2D();
  TfLiteStatus AddLeakyRelu();
  TfLiteStatus AddLess();
  TfLiteStatus AddLessEqual();
  TfLiteStatus AddLog();
  TfLiteStatus AddLogSoftmax();
  TfLiteStatus AddLogicalAnd();
  TfLiteStatus AddLogicalNot();
  TfLiteStatus AddLogicalOr();
  TfLiteStatus AddLogistic();
  TfLiteStatus AddMaxPool2D();
  TfLiteStatus AddMaximum();
  TfLiteStatus AddMean();
  TfLiteStatus AddMinimum();
  TfLiteStatus AddMirrorPad();
  TfLiteStatus AddMul();
  TfLiteStatus AddNeg();
  TfLiteStatus AddNotEqual();
  TfLiteStatus AddPack();
  TfLiteStatus AddPad();
  TfLiteStatus AddPadV2();
  TfLiteStatus AddPrelu();
  TfLiteStatus AddQuantize();
  TfLiteStatus AddReadVariable();
  TfLiteStatus AddReduceAll();
  TfLiteStatus AddReduceMax();
  TfLiteStatus AddReduceMin();
  TfLiteStatus AddRelu();
  TfLiteStatus AddRelu6();
  TfLiteStatus AddReshape();
  TfLiteStatus AddResizeBilinear();
  TfLiteStatus AddResizeNearestNeighbor();
  TfLiteStatus AddReverseV2();
  TfLiteStatus AddRound();
  TfLiteStatus AddRsqrt();
  TfLiteStatus AddSelectV2();
  TfLiteStatus AddShape();
  TfLiteStatus AddSin();
  TfLiteStatus AddSlice();
  TfLiteStatus AddSoftmax();
  TfLiteStatus AddSpaceToBatchNd();
  TfLiteStatus AddSpaceToDepth();
  TfLiteStatus AddSplit();
  TfLiteStatus AddSplitV();
  TfLiteStatus AddSqrt();
  TfLiteStatus AddSquare();
  TfLiteStatus AddSquaredDifference();
  TfLiteStatus AddSqueeze();
  TfLiteStatus AddStridedSlice();
  TfLiteStatus AddSub();
  TfLiteStatus AddSum();
  TfLiteStatus AddSvdf();
  TfLiteStatus AddTanh();
  TfLiteStatus AddTranspose();
  TfLiteStatus AddTransposeConv();
  TfLiteStatus AddUnidirectionalSequenceLSTM();
  TfLiteStatus AddUnpack();
  TfLiteStatus AddVarHandle();
  TfLiteStatus AddWhile();
  TfLiteStatus AddZerosLike();
};
}  // namespace tflite
