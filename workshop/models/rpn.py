"""The region proposal network's trainable parts: the head (a Keras 3 layer) and its loss.

Anchor order. For a feature map ``(B, H, W, C)`` and ``A`` anchors per cell the head returns
objectness logits ``(B, H*W*A)`` and deltas ``(B, H*W*A, 4)`` whose row ``(y*W + x)*A + a``
belongs to anchor ``a`` of cell ``(y, x)``: the order of ``grid_anchors`` (a plain reshape of
the ``(B, H, W, A)`` and ``(B, H, W, A*4)`` conv outputs).

Sampling priority: :func:`workshop.conventions.sampling_priority` (re-exported here).

Importing this module is light: Keras and TensorFlow load when the head or a loss is used.
"""

from __future__ import annotations

from ..conventions import sampling_priority, sampling_priority_tf

__all__ = [
    "RPNHead",  # noqa: F822  (built lazily by __getattr__)
    "rpn_box_loss",
    "rpn_loss",
    "rpn_objectness_loss",
    "sampling_priority",
    "sampling_priority_tf",
    "smooth_l1",
]

# ============================================================================================
# the head
# ============================================================================================
_HEAD_CLASS = None


def _rpn_head_class():
    """Define (once) and return the Keras layer class; keeps `import` of this module light."""
    global _HEAD_CLASS
    if _HEAD_CLASS is not None:
        return _HEAD_CLASS
    import keras
    from keras import layers, ops

    @keras.saving.register_keras_serializable(package="workshop")
    class RPNHead(layers.Layer):
        """RPN head: 3x3 conv + ReLU, then 1x1 objectness (A logits) and 1x1 deltas (A*4).

        Args:
          num_anchors: A, anchors per feature-map cell.
          channels: width of the shared 3x3 conv.
          init_stddev: standard deviation of the 1x1 layers' normal initialisation (biases 0),
            so that initial logits and deltas are small.
        Call: features ``(B, H, W, C)`` -> ``(objectness (B, H*W*A), deltas (B, H*W*A, 4))``
        in ``grid_anchors`` order. Sub-layers: ``rpn_conv``, ``rpn_objectness``, ``rpn_deltas``.
        """

        def __init__(self, num_anchors: int, channels: int = 256, init_stddev: float = 0.01, **kwargs):
            super().__init__(**kwargs)
            if int(num_anchors) < 1:
                raise ValueError(f"num_anchors: expected >= 1, got {num_anchors}")
            self.num_anchors = int(num_anchors)
            self.channels = int(channels)
            self.init_stddev = float(init_stddev)
            init = keras.initializers.RandomNormal(stddev=self.init_stddev)
            self.conv = layers.Conv2D(self.channels, 3, padding="same", activation="relu",
                                      kernel_initializer=init, name="rpn_conv")
            self.objectness = layers.Conv2D(self.num_anchors, 1, kernel_initializer=init,
                                            name="rpn_objectness")
            self.deltas = layers.Conv2D(4 * self.num_anchors, 1, kernel_initializer=init,
                                        name="rpn_deltas")

        def build(self, input_shape):
            self.conv.build(input_shape)
            inner = tuple(input_shape[:-1]) + (self.channels,)
            self.objectness.build(inner)
            self.deltas.build(inner)

        def call(self, features):
            x = self.conv(features)
            logits = self.objectness(x)                     # (B, H, W, A)
            deltas = self.deltas(x)                         # (B, H, W, A*4): anchor a -> 4a..4a+3
            batch = ops.shape(logits)[0]
            return ops.reshape(logits, (batch, -1)), ops.reshape(deltas, (batch, -1, 4))

        def compute_output_shape(self, input_shape):
            b, h, w = input_shape[0], input_shape[1], input_shape[2]
            n = None if h is None or w is None else h * w * self.num_anchors
            return (b, n), (b, n, 4)

        def get_config(self):
            config = super().get_config()
            config.update(num_anchors=self.num_anchors, channels=self.channels,
                          init_stddev=self.init_stddev)
            return config

    _HEAD_CLASS = RPNHead
    return RPNHead


def __getattr__(name: str):
    if name == "RPNHead":
        return _rpn_head_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ============================================================================================
# the loss (plain functions for a custom train step)
# ============================================================================================
def smooth_l1(x, beta: float = 1.0 / 9):
    """Elementwise smooth L1: ``0.5 * x**2 / beta`` where ``|x| < beta``, else ``|x| - 0.5*beta``
    (``beta = 0``: plain L1)."""
    import tensorflow as tf

    ax = tf.abs(x)
    if beta <= 0:
        return ax
    return tf.where(ax < beta, 0.5 * tf.square(ax) / beta, ax - 0.5 * beta)


def _normaliser(labels, dtype):
    import tensorflow as tf

    return tf.maximum(tf.reduce_sum(tf.cast(labels >= 0, dtype)), tf.constant(1.0, dtype))


def rpn_objectness_loss(objectness, labels):
    """Binary cross-entropy from logits over the sampled anchors (``labels >= 0``), summed and
    divided by the number of sampled anchors (at least 1).

    Args: objectness float ``(..., N)`` logits; labels int ``(..., N)`` in {1, 0, -1}.
    Returns: a float scalar (0 when nothing is sampled). Ignored anchors (-1) get no gradient.
    """
    import tensorflow as tf

    logits = tf.convert_to_tensor(objectness)
    labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
    sampled = labels >= 0
    target = tf.cast(tf.equal(labels, 1), logits.dtype)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
    bce = tf.where(sampled, bce, tf.zeros_like(bce))
    return tf.reduce_sum(bce) / _normaliser(labels, logits.dtype)


def rpn_box_loss(pred_deltas, labels, target_deltas, beta: float = 1.0 / 9):
    """Smooth L1 on the positive anchors' deltas (``labels == 1``), summed over anchors and
    coordinates and divided by the number of sampled anchors (``labels >= 0``, at least 1),
    as in Faster R-CNN (Detectron2 normalises the same way).

    Args: pred_deltas, target_deltas float ``(..., N, 4)``; labels int ``(..., N)``.
    Returns: a float scalar.
    """
    import tensorflow as tf

    pred = tf.convert_to_tensor(pred_deltas)
    target = tf.cast(tf.convert_to_tensor(target_deltas), pred.dtype)
    labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
    positive = tf.equal(labels, 1)[..., None]
    per = smooth_l1(pred - target, beta)
    per = tf.where(positive, per, tf.zeros_like(per))  # where, not *: no NaN from ignored rows
    return tf.reduce_sum(per) / _normaliser(labels, pred.dtype)


def rpn_loss(objectness, pred_deltas, labels, target_deltas, beta: float = 1.0 / 9,
             box_weight: float = 1.0, return_parts: bool = False):
    """The RPN loss: :func:`rpn_objectness_loss` + ``box_weight`` * :func:`rpn_box_loss`.

    Args:
      objectness: ``(B, N)`` (or ``(N,)``) logits from :class:`RPNHead`.
      pred_deltas: ``(B, N, 4)`` predicted deltas.
      labels: int ``(B, N)`` from ``rpn_targets``: 1 positive, 0 negative, -1 ignored.
      target_deltas: ``(B, N, 4)`` from ``rpn_targets`` (encoded with weights (1, 1, 1, 1)).
      beta: smooth-L1 transition point. box_weight: weight of the box term.
      return_parts: also return the two terms.
    Returns: the scalar total, or ``(total, objectness_term, box_term)``.
    """
    obj = rpn_objectness_loss(objectness, labels)
    box = rpn_box_loss(pred_deltas, labels, target_deltas, beta)
    total = obj + box_weight * box
    return (total, obj, box) if return_parts else total
