"""The UNet (Ronneberger et al., 2015) as a Keras 3 functional model, and its training model
with the pixel-weighted cross-entropy computed inside the graph.

Architecture (``depth`` = number of poolings, ``f_i = base_filters * 2**(i-1)``)::

    image -> enc1 (2 conv 3x3, f_1) -> pool1 -> enc2 ... -> enc{depth} -> pool{depth}
          -> bottleneck (2 conv 3x3, f_{depth+1})
          -> up{depth} (Conv2DTranspose 2x2, stride 2, f_depth) -> concat{depth} [skip, up]
             -> dec{depth} (2 conv 3x3) -> ... -> dec1 -> logits (conv 1x1, num_classes, linear)

Layer names: ``enc{i}_conv1``, ``enc{i}_conv2``, ``pool{i}``, ``bottleneck_conv1/2``,
``up{i}``, ``skip{i}_crop`` (valid padding only), ``concat{i}``, ``dec{i}_conv1/2``, ``logits``.
The output is logits (no softmax): losses take ``from_logits=True``.

Sizes, per spatial axis of length ``n``:

* ``padding="same"``: the output has the input's size; ``n`` must be a multiple of
  ``2**depth`` (or ``None``, the size then being checked when the model runs).
* ``padding="valid"`` (the paper): every 3x3 convolution loses 2 pixels, so each pooling must
  see an even size and the output is smaller than the input; the skips are centre-cropped
  (``Cropping2D``) to the upsampled map. With ``depth=4`` the valid sizes are
  ``n = 16 k + 12`` for ``k >= 11`` (``188, 204, ..., 572 -> 388`` as in the paper); in general
  see :func:`unet_output_size` and :func:`nearest_valid_sizes`. The output covers the
  centre of the input: crop labels and weight maps with :func:`center_crop`.

Importing this module imports nothing heavy; Keras loads when a model is built.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

PADDINGS = ("same", "valid")


# -- sizes -------------------------------------------------------------------------------------
def _check_config(depth: int, padding: str) -> str:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth: expected an int >= 1 (the number of poolings), got {depth!r}")
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise ValueError(f"padding: expected 'same' or 'valid', got {padding!r}")
    return padding.lower()


def unet_output_size(size: int, depth: int = 4, padding: str = "same") -> int | None:
    """Output length of a UNet on one input axis of length ``size``, or None if ``size`` is not
    valid (an odd size before a pooling, or a map shrunk to nothing)."""
    padding = _check_config(depth, padding)
    if size < 1:
        return None
    if padding == "same":
        return size if size % 2 ** depth == 0 else None
    s = size
    for _ in range(depth):
        s -= 4
        if s < 2 or s % 2:
            return None
        s //= 2
    s -= 4                                   # bottleneck
    if s < 1:
        return None
    for _ in range(depth):
        s = 2 * s - 4
        if s < 1:
            return None
    return s


def nearest_valid_sizes(size: int, depth: int = 4, padding: str = "same") -> tuple[int | None, int]:
    """The largest valid size ``<= size`` (None if there is none) and the smallest ``>= size``."""
    below = next((n for n in range(size, 0, -1) if unet_output_size(n, depth, padding)), None)
    above = next(n for n in range(max(size, 1), 10 ** 7) if unet_output_size(n, depth, padding))
    return below, above


def _check_input_shape(input_shape, depth: int, padding: str) -> tuple:
    shape = tuple(None if v is None else int(v) for v in input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape: expected (H, W, C), got {input_shape!r}")
    if shape[2] is None or shape[2] < 1:
        raise ValueError(f"input_shape: expected a known number of channels, got {input_shape!r}")
    for axis, n in zip(("height", "width"), shape[:2]):
        if n is None:
            if padding == "valid":
                raise ValueError(f"input_shape: padding='valid' needs a known {axis} (the skips' crops "
                                 f"are fixed sizes), got None")
            continue
        if unet_output_size(n, depth, padding) is None:
            below, above = nearest_valid_sizes(n, depth, padding)
            near = f"{below} or {above}" if below else f"{above}"
            rule = (f"a multiple of 2**depth = {2 ** depth}" if padding == "same" else
                    "one whose size stays even before every pooling, after the 3x3 'valid' convolutions")
            raise ValueError(f"input_shape: {axis} {n} is not valid for a depth-{depth} UNet with "
                             f"padding='{padding}' (it needs {rule}); nearest valid: {near}")
    return shape


# -- the network ---------------------------------------------------------------------------------
def _conv_pair(x, filters: int, padding: str, name: str):
    from keras import layers

    for j in (1, 2):
        x = layers.Conv2D(filters, 3, padding=padding, activation="relu", kernel_initializer="he_normal",
                          name=f"{name}_conv{j}")(x)
    return x


def _unet_graph(image, num_classes: int, depth: int, base_filters: int, padding: str):
    """The UNet's layers applied to the ``image`` tensor; returns the logits tensor."""
    from keras import layers

    x, skips = image, []
    for i in range(1, depth + 1):
        x = _conv_pair(x, base_filters * 2 ** (i - 1), padding, f"enc{i}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = _conv_pair(x, base_filters * 2 ** depth, padding, "bottleneck")
    for i in range(depth, 0, -1):
        filters = base_filters * 2 ** (i - 1)
        x = layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer="he_normal", name=f"up{i}")(x)
        skip = skips[i - 1]
        if padding == "valid":
            dh, dw = skip.shape[1] - x.shape[1], skip.shape[2] - x.shape[2]
            skip = layers.Cropping2D(((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)),
                                     name=f"skip{i}_crop")(skip)
        x = layers.Concatenate(name=f"concat{i}")([skip, x])
        x = _conv_pair(x, filters, padding, f"dec{i}")
    return layers.Conv2D(num_classes, 1, name="logits")(x)


def _check_build_args(num_classes, base_filters):
    for name, v in (("num_classes", num_classes), ("base_filters", base_filters)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")


def build_unet(input_shape: Sequence[int | None], num_classes: int, depth: int = 4, base_filters: int = 16,
               padding: str = "same", name: str = "unet"):
    """A UNet mapping float images ``(B, H, W, C)`` to logits ``(B, Ho, Wo, num_classes)``.

    Args:
      input_shape: ``(H, W, C)``; see the module docstring for the valid ``H`` and ``W``
        (``None`` allowed with ``padding="same"``).
      num_classes: output channels (logits, no softmax).
      depth: number of poolings (the paper: 4).
      base_filters: filters of the first level, doubled at every level (the paper: 64).
      padding: ``"same"`` (``Ho, Wo = H, W``) or ``"valid"`` (the paper: smaller output,
        centre-cropped skips).

    Raises:
      ValueError: an invalid size, naming the nearest valid sizes.
    """
    import keras

    padding = _check_config(depth, padding)
    _check_build_args(num_classes, base_filters)
    shape = _check_input_shape(input_shape, depth, padding)
    image = keras.Input(shape, name="image")
    logits = _unet_graph(image, int(num_classes), int(depth), int(base_filters), padding)
    return keras.Model(image, logits, name=name)


# -- the pixel-weighted loss ---------------------------------------------------------------------
def pixel_weighted_cross_entropy(labels, logits, weights):
    """``mean over batch and pixels of weights * -log softmax(logits)[labels]`` (keras.ops).

    Args:
      labels: int ``(B, H, W)`` in ``0..K-1``; logits: ``(B, H, W, K)``; weights: float ``(B, H, W)``
        (e.g. ``workshop.reference``'s ``unet_weight_map`` per image).
    Returns:
      a float scalar tensor.
    """
    from keras import ops

    per_pixel = ops.sparse_categorical_crossentropy(ops.cast(labels, "int32"), logits, from_logits=True)
    return ops.mean(ops.cast(weights, per_pixel.dtype) * per_pixel)


@functools.cache
def _loss_layer_class():
    import keras

    class PixelWeightedCrossEntropy(keras.layers.Layer):
        """Adds ``loss_fn(logits, labels, weights)`` (default :func:`pixel_weighted_cross_entropy`)
        of ``[logits, labels, weights]`` to the model's losses (``add_loss``) and passes the
        logits through unchanged."""

        def __init__(self, loss_fn=None, **kwargs):
            super().__init__(**kwargs)
            self.loss_fn = loss_fn

        def call(self, inputs):
            logits, labels, weights = inputs
            if self.loss_fn is None:
                self.add_loss(pixel_weighted_cross_entropy(labels, logits, weights))
            else:
                self.add_loss(self.loss_fn(logits, labels, weights))
            return logits

        def compute_output_shape(self, input_shapes):
            return input_shapes[0]

    return PixelWeightedCrossEntropy


def build_weighted_unet(input_shape: Sequence[int | None], num_classes: int, depth: int = 4,
                        base_filters: int = 16, padding: str = "same", loss_fn=None):
    """A UNet and its training model, whose loss is the pixel-weighted cross-entropy.

    The training model takes ``{"image": (B, H, W, C), "labels": int (B, Ho, Wo), "weights":
    float (B, Ho, Wo)}`` (``Ho, Wo`` the UNet's output size: crop labels and weight maps with
    :func:`center_crop` for ``padding="valid"``); its ``weighted_ce`` layer adds the loss to the
    graph (``add_loss``), so ``model.compile(optimizer=...)`` needs no loss and
    ``model.fit(inputs_dict, epochs=...)`` no targets. Both models share their layers.
    ``loss_fn``: ``(logits, labels, weights) -> scalar`` in TensorFlow (e.g. chapter 8's
    ``weighted_cross_entropy_tf``) instead of :func:`pixel_weighted_cross_entropy`.

    Returns:
      ``(training_model, unet)``; ``unet`` maps images to logits.
    """
    import keras

    padding = _check_config(depth, padding)
    _check_build_args(num_classes, base_filters)
    shape = _check_input_shape(input_shape, depth, padding)
    image = keras.Input(shape, name="image")
    logits = _unet_graph(image, int(num_classes), int(depth), int(base_filters), padding)
    unet = keras.Model(image, logits, name="unet")
    out_hw = tuple(logits.shape[1:3])
    labels = keras.Input(out_hw, dtype="int32", name="labels")
    weights = keras.Input(out_hw, name="weights")
    out = _loss_layer_class()(loss_fn, name="weighted_ce")([logits, labels, weights])
    training = keras.Model({"image": image, "labels": labels, "weights": weights}, out, name="weighted_unet")
    return training, unet


def center_crop(array, size: Sequence[int]):
    """The centre ``(h, w)`` window of the last two axes of ``array`` ``(..., H, W)`` (labels,
    weight maps): ``(H - h) // 2`` rows cropped at the top, the rest at the bottom (the rule of
    the ``skip{i}_crop`` layers); columns likewise."""
    arr = np.asarray(array)
    h, w = (int(v) for v in size)
    big_h, big_w = arr.shape[-2:]
    if not (0 < h <= big_h and 0 < w <= big_w):
        raise ValueError(f"size: expected (h, w) within the array's last two axes {arr.shape[-2:]}, got {size}")
    top, left = (big_h - h) // 2, (big_w - w) // 2
    return arr[..., top:top + h, left:left + w]
