"""Small convolutional networks: the chapter-1 classifier and the backbone reused by transfer
learning (chapter 2) and the detector (chapters 5-6).

All models are Keras 3 functional models with named layers and logits outputs (losses take
``from_logits=True``). Images are float32 ``(H, W, 3)`` in ``[0, 1]``; the models normalise
inputs themselves (a ``Rescaling`` layer that zero-centres them), so callers never do.
"""

from __future__ import annotations

BACKBONE_STRIDE = 8          # the backbone's feature map is the image downsampled 8 times
BACKBONE_CHANNELS = 96       # channels of the backbone's last feature map


def _conv_block(x, filters: int, name: str, pool: bool = True):
    from keras import layers

    # no batch normalisation: the detector trains with 8 images a batch, and frozen features
    # (chapter 2) then behave the same in training and inference
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv1")(x)
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv2")(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return x


def build_small_cnn(input_shape=(32, 32, 3), num_classes: int = 5, name: str = "small_cnn"):
    """The chapter-1 classifier: two conv/pool stages, global pooling, a dense logits layer.

    Args:
      input_shape: ``(H, W, 3)`` float images in ``[0, 1]``.
      num_classes: number of output logits.
    Returns:
      a ``keras.Model`` mapping ``(B, H, W, 3)`` to logits ``(B, num_classes)``.
    """
    import keras
    from keras import layers

    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="zero_centre")(inputs)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def build_backbone(input_shape=(None, None, 3), name: str = "backbone"):
    """A fully convolutional trunk with stride :data:`BACKBONE_STRIDE`.

    Returns:
      a ``keras.Model`` mapping ``(B, H, W, 3)`` images in ``[0, 1]`` to features
      ``(B, H/8, W/8, BACKBONE_CHANNELS)``.
    """
    import keras
    from keras import layers

    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="zero_centre")(inputs)
    x = _conv_block(x, 24, "block1")
    x = _conv_block(x, 48, "block2")
    x = _conv_block(x, BACKBONE_CHANNELS, "block3")
    x = layers.Conv2D(BACKBONE_CHANNELS, 3, padding="same", activation="relu", name="block4_conv")(x)
    return keras.Model(inputs, x, name=name)


def build_classifier_on(backbone, num_classes: int, input_shape=(64, 64, 3),
                        trainable_backbone: bool = True, name: str = "classifier"):
    """A classification head (global pooling + dense logits) on top of ``backbone``.

    With ``trainable_backbone=False`` the backbone is frozen (feature extraction); with True it
    is fine-tuned.
    """
    import keras
    from keras import layers

    backbone.trainable = trainable_backbone
    inputs = keras.Input(input_shape, name="image")
    features = backbone(inputs, training=None if trainable_backbone else False)
    x = layers.GlobalAveragePooling2D(name="gap")(features)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
