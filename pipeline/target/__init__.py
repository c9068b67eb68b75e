"""The target-side analysis of a .tflite: its graph and ops, the optimized kernels' scratch, the arena, the memory
plan, the cost model, the per-layer profile and the board fit. No TensorFlow; imports errors, cache and boards only.
"""
