"""An example model builder for `invoke build --model=examples/my_model.py --data=my_data.npz`.

The contract (README, "Your own model"):
- `build_model(input_shape, num_classes, width=1.0, depth=2)` returns a Keras model (Keras 3 `import keras`, as
  here, or `import tf_keras`). `input_shape` and `num_classes` come from --data. `width` and `depth` are optional:
  declare them and `invoke explore` searches them (and `--width`/`--depth` set them).
- Optional settings at module level, plain values: EPOCHS, BATCH_SIZE, LEARNING_RATE, OPTIMIZER (adam, sgd,
  rmsprop), LOSS (sparse_categorical_crossentropy, mse, mae), INPUT_SHAPE (needed for an image folder),
  DEPTH_RANGE and SEARCH_SPACE (what explore samples; keys as in the zoo: width, depth, prune, sparsity, precision).
This file is Python the pipeline runs: use builders you trust.
"""
import keras
from keras import layers

EPOCHS = 30
BATCH_SIZE = 32
LEARNING_RATE = 2e-3
OPTIMIZER = "adam"
LOSS = "sparse_categorical_crossentropy"
DEPTH_RANGE = (1, 3)
SEARCH_SPACE = {"width": (0.5, 1.5), "depth": (1, 3), "prune": ("none", "magnitude", "structured"),
                "sparsity": (0.2, 0.6), "precision": ("int8",)}


def build_model(input_shape, num_classes, width=1.0, depth=2):
    """`depth` blocks of 3x3 convolution, batch norm and ReLU6 (the first one wide, the rest residual with a
    depthwise-separable convolution), global average pooling and a softmax classifier."""
    filters = max(4, int(round(16 * width)))
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(max_value=6.0)(x)
    for _ in range(depth - 1):
        y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        x = layers.ReLU(max_value=6.0)(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="my_model")
