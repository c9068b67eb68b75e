"""Model making: datasets, the zoo, training, pruning (magnitude and structured), QAT, int8 conversion, accuracy.

The only part of the package that imports TensorFlow (through `tfenv`). Imports: errors, cache, boards, target.
"""
