"""2-D convolution and max pooling, in three tiers, with TensorFlow's layouts and output sizes.

Layouts (TensorFlow's, channels last, one image -- no batch axis):

* ``x``: ``(H, W, C_in)``.
* ``kernel``: ``(kh, kw, C_in, C_out)``, as ``tf.nn.conv2d`` and ``keras.layers.Conv2D``.
* result: ``(Ho, Wo, C_out)``, float64 (numpy tiers) or ``x``'s float dtype (TF tier).

What deep-learning frameworks call convolution is a **cross-correlation**: the kernel is
slid over the image as given, not flipped::

    out[i, j, o] = sum_{a, b, c} xp[i * sh + a, j * sw + b, c] * kernel[a, b, c, o]

where ``xp`` is ``x`` zero-padded as below. Output size and padding, exactly as
``tf.nn.conv2d`` (per axis; columns likewise with ``W``, ``kw``, ``sw``):

=========  =========================  ==================================================
padding    ``Ho``                     padding added
=========  =========================  ==================================================
VALID      ``(H - kh) // sh + 1``     none (``kh <= H`` is required)
SAME       ``ceil(H / sh)``           ``P = max((Ho - 1) * sh + kh - H, 0)`` rows:
                                      ``P // 2`` at the top, the rest (one more when ``P``
                                      is odd) at the bottom
=========  =========================  ==================================================

Max pooling (:func:`max_pool2d_loops` ...) takes the maximum over non-overlapping
``pool_size x pool_size`` windows (stride = ``pool_size``, VALID: a last partial row/column of
windows is dropped), per channel, exactly as ``tf.nn.max_pool2d(x, pool_size, pool_size, "VALID")``.

Its backward pass (:func:`max_pool2d_backward_loops` ...) takes the upstream gradient
``grad_out = dL/d out`` ``(H // p, W // p, C)`` to ``grad_x = dL/dx`` ``(H, W, C)``: by the chain
rule each window's ``grad_out[i, j, c]`` goes to the one element of the window the maximum came
from, every other element gets 0, and so do the rows and columns the floor dropped. **Ties**
(several equal maxima in a window): the gradient goes to the *first* of them in row-major order
(top row first, left to right within a row), which is what TensorFlow's gradient of
``tf.nn.max_pool2d`` does on CPU, eager and under XLA (tests/test_conv.py checks it against
``tf.GradientTape``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "conv2d_loops",
    "conv2d_numpy",
    "conv2d_output_size",
    "conv2d_tf",
    "max_pool2d_backward_loops",
    "max_pool2d_backward_numpy",
    "max_pool2d_backward_tf",
    "max_pool2d_loops",
    "max_pool2d_numpy",
    "max_pool2d_tf",
]


# -- shared geometry (the same argument rules as the transposed convolution) ------------------
from .transpose_conv import _padding, _pair  # noqa: E402


def conv2d_output_size(size: int, kernel_size: int, stride: int, padding: str) -> tuple[int, int, int]:
    """For one spatial axis: ``(output size, padding before, padding after)`` as ``tf.nn.conv2d``."""
    padding = _padding(padding)
    if padding == "VALID":
        if kernel_size > size:
            raise ValueError(f"VALID convolution needs the kernel ({kernel_size}) to fit in the input ({size})")
        return (size - kernel_size) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    return out, total // 2, total - total // 2


def _geometry(x_shape, k_shape, stride, padding):
    """Validate shapes; return ``(sh, sw, (Ho, top, bottom), (Wo, left, right))``."""
    if len(x_shape) != 3:
        raise ValueError(f"x: expected shape (H, W, C_in), got {tuple(x_shape)}")
    if len(k_shape) != 4:
        raise ValueError(f"kernel: expected shape (kh, kw, C_in, C_out), got {tuple(k_shape)}")
    h, w, c_in = x_shape
    kh, kw, k_in, _ = k_shape
    if k_in != c_in:
        raise ValueError(f"kernel: expected (kh, kw, C_in, C_out) with C_in = {c_in} (x's last axis), "
                         f"got shape {tuple(k_shape)}")
    if min(h, w, kh, kw) < 1:
        raise ValueError(f"x and kernel need non-empty spatial axes, got x {tuple(x_shape)}, "
                         f"kernel {tuple(k_shape)}")
    sh, sw = _pair(stride, "stride")
    return sh, sw, conv2d_output_size(h, kh, sh, padding), conv2d_output_size(w, kw, sw, padding)


def _as_float(a, name: str) -> np.ndarray:
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a numeric array: {err}") from None


def _padded(x: np.ndarray, rows, cols) -> np.ndarray:
    _, top, bottom = rows
    _, left, right = cols
    return np.pad(x, ((top, bottom), (left, right), (0, 0)))


# -- convolution: tier 1, loops --------------------------------------------------------------
def conv2d_loops(x, kernel, stride=1, padding="VALID") -> np.ndarray:
    """2-D cross-correlation, one output value and one kernel tap at a time.

    Args:
      x: ``(H, W, C_in)`` image or feature map.
      kernel: ``(kh, kw, C_in, C_out)``, used as given (not flipped).
      stride: int or ``(sh, sw)``.
      padding: ``"VALID"`` or ``"SAME"`` (case-insensitive), as ``tf.nn.conv2d``.

    Returns:
      float64 ``(Ho, Wo, C_out)``.
    """
    x, kernel = _as_float(x, "x"), _as_float(kernel, "kernel")
    sh, sw, rows, cols = _geometry(x.shape, kernel.shape, stride, padding)
    xp = _padded(x, rows, cols)
    kh, kw, c_in, c_out = kernel.shape
    out = np.zeros((rows[0], cols[0], c_out))
    for i in range(rows[0]):
        for j in range(cols[0]):
            for o in range(c_out):
                total = 0.0
                for a in range(kh):
                    for b in range(kw):
                        for c in range(c_in):
                            total += xp[i * sh + a, j * sw + b, c] * kernel[a, b, c, o]
                out[i, j, o] = total
    return out


# -- convolution: tier 2, numpy --------------------------------------------------------------
def conv2d_numpy(x, kernel, stride=1, padding="VALID") -> np.ndarray:
    """2-D cross-correlation without a Python loop over pixels: every ``kh x kw`` window of the
    padded input (``sliding_window_view``, then every ``sh``-th row / ``sw``-th column) is
    contracted with the kernel in one ``einsum``. Same arguments and result as
    :func:`conv2d_loops`."""
    x, kernel = _as_float(x, "x"), _as_float(kernel, "kernel")
    sh, sw, rows, cols = _geometry(x.shape, kernel.shape, stride, padding)
    xp = _padded(x, rows, cols)
    kh, kw = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(0, 1))  # (., ., C_in, kh, kw)
    windows = windows[: (rows[0] - 1) * sh + 1: sh, : (cols[0] - 1) * sw + 1: sw]
    return np.einsum("ijcab,abco->ijo", windows, kernel, optimize=True)


# -- convolution: tier 3, TensorFlow ---------------------------------------------------------
def conv2d_tf(x, kernel, stride=1, padding="VALID"):
    """2-D cross-correlation with ``tf.nn.conv2d`` (which wants a batch axis and the strides
    ``[1, sh, sw, 1]``). Same arguments as :func:`conv2d_loops` (``stride`` and ``padding``
    stay Python values); tensors in and out, ``x``'s float dtype. Works under
    ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    kernel = tf.cast(tf.convert_to_tensor(kernel), x.dtype)
    sh, sw = _pair(stride, "stride")
    padding = _padding(padding)
    if None not in x.shape and None not in kernel.shape:  # validate exactly as the numpy tiers
        _geometry(tuple(x.shape), tuple(kernel.shape), (sh, sw), padding)
    return tf.nn.conv2d(x[None], kernel, strides=[1, sh, sw, 1], padding=padding)[0]


# -- max pooling -----------------------------------------------------------------------------
def _pool_geometry(shape, pool_size) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"x: expected shape (H, W, C), got {tuple(shape)}")
    if isinstance(pool_size, bool) or not isinstance(pool_size, (int, np.integer)) or pool_size < 1:
        raise ValueError(f"pool_size: expected an int >= 1, got {pool_size!r}")
    p = int(pool_size)
    if shape[0] < p or shape[1] < p:
        raise ValueError(f"x: a {p}x{p} window does not fit in {tuple(shape[:2])}")
    return shape[0] // p, shape[1] // p, p


def max_pool2d_loops(x, pool_size=2) -> np.ndarray:
    """Max over non-overlapping ``pool_size x pool_size`` windows, per channel.

    Args:
      x: ``(H, W, C)``.
      pool_size: window side and stride (int >= 1); VALID: a partial last window is dropped.

    Returns:
      float64 ``(H // pool_size, W // pool_size, C)``.
    """
    x = _as_float(x, "x")
    ho, wo, p = _pool_geometry(x.shape, pool_size)
    out = np.zeros((ho, wo, x.shape[2]))
    for i in range(ho):
        for j in range(wo):
            for c in range(x.shape[2]):
                best = x[i * p, j * p, c]
                for a in range(p):
                    for b in range(p):
                        best = max(best, x[i * p + a, j * p + b, c])
                out[i, j, c] = best
    return out


def max_pool2d_numpy(x, pool_size=2) -> np.ndarray:
    """Max pooling by a reshape: crop to whole windows, view as ``(Ho, p, Wo, p, C)``, take the
    max over the two window axes. Same arguments and result as :func:`max_pool2d_loops`."""
    x = _as_float(x, "x")
    ho, wo, p = _pool_geometry(x.shape, pool_size)
    return x[: ho * p, : wo * p].reshape(ho, p, wo, p, x.shape[2]).max(axis=(1, 3))


def max_pool2d_tf(x, pool_size=2):
    """Max pooling with ``tf.nn.max_pool2d`` (VALID, stride = window). Tensors in and out;
    ``pool_size`` stays a Python int. Works under ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    if None not in x.shape:
        _pool_geometry(tuple(x.shape), pool_size)
    p = int(pool_size)
    return tf.nn.max_pool2d(x[None], ksize=p, strides=p, padding="VALID")[0]


# -- max pooling, backward -------------------------------------------------------------------
def _pool_backward_geometry(x_shape, g_shape, pool_size) -> tuple[int, int, int]:
    ho, wo, p = _pool_geometry(x_shape, pool_size)
    expected = (ho, wo, x_shape[2])
    if tuple(g_shape) != expected:
        raise ValueError(f"grad_out: expected shape (H // p, W // p, C) = {expected} for x of "
                         f"shape {tuple(x_shape)} and pool_size {p}, got {tuple(g_shape)}")
    return ho, wo, p


def max_pool2d_backward_loops(x, grad_out, pool_size=2) -> np.ndarray:
    """The gradient of :func:`max_pool2d_loops` with respect to its input, one window at a time.

    Args:
      x: ``(H, W, C)``, the pooling's input.
      grad_out: ``(H // p, W // p, C)``, dL/d(output) of the pooling.
      pool_size: window side and stride ``p`` (int >= 1).

    Returns:
      float64 ``(H, W, C)``: ``grad_out[i, j, c]`` at the position of window ``(i, j)``'s
      maximum in channel ``c`` (the first in row-major order when several are equal), 0
      elsewhere, including the rows and columns no window covers.
    """
    x, g = _as_float(x, "x"), _as_float(grad_out, "grad_out")
    ho, wo, p = _pool_backward_geometry(x.shape, g.shape, pool_size)
    grad_x = np.zeros_like(x)
    for i in range(ho):
        for j in range(wo):
            for c in range(x.shape[2]):
                best_a, best_b = 0, 0
                for a in range(p):
                    for b in range(p):
                        if x[i * p + a, j * p + b, c] > x[i * p + best_a, j * p + best_b, c]:
                            best_a, best_b = a, b          # strictly larger: the first tie stays
                grad_x[i * p + best_a, j * p + best_b, c] += g[i, j, c]
    return grad_x


def max_pool2d_backward_numpy(x, grad_out, pool_size=2) -> np.ndarray:
    """The gradient of max pooling without a Python loop over pixels: view the cropped input as
    windows ``(Ho, Wo, C, p * p)`` (row-major inside a window), ``argmax`` (the first maximum),
    a one-hot mask times ``grad_out``, back to ``(Ho * p, Wo * p, C)``, in a zero ``(H, W, C)``.
    Same arguments and result as :func:`max_pool2d_backward_loops`."""
    x, g = _as_float(x, "x"), _as_float(grad_out, "grad_out")
    ho, wo, p = _pool_backward_geometry(x.shape, g.shape, pool_size)
    c = x.shape[2]
    windows = x[: ho * p, : wo * p].reshape(ho, p, wo, p, c).transpose(0, 2, 4, 1, 3)
    first_max = windows.reshape(ho, wo, c, p * p).argmax(axis=-1)            # (Ho, Wo, C)
    routed = (np.arange(p * p) == first_max[..., None]) * g[..., None]        # (Ho, Wo, C, p*p)
    grad_x = np.zeros_like(x)
    grad_x[: ho * p, : wo * p] = (routed.reshape(ho, wo, c, p, p).transpose(0, 3, 1, 4, 2)
                                  .reshape(ho * p, wo * p, c))
    return grad_x


def max_pool2d_backward_tf(x, grad_out, pool_size=2):
    """The gradient of max pooling in TensorFlow, without differentiating anything: a mask of
    each window's first maximum (equal to the window's max, and a running count of such
    elements, ``tf.cumsum`` in row-major order, equal to 1) times ``grad_out``, back to the
    cropped shape, then ``tf.pad`` with zeros to ``(H, W, C)``. Tensors in and out, ``x``'s float
    dtype; ``pool_size`` stays a Python int. Works under ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    g = tf.cast(tf.convert_to_tensor(grad_out), x.dtype)
    p = int(pool_size)
    if None not in x.shape and None not in g.shape:    # validate exactly as the numpy tiers
        _pool_backward_geometry(tuple(x.shape), tuple(g.shape), p)
    h, w, c = tf.unstack(tf.shape(x))
    ho, wo = h // p, w // p
    windows = tf.reshape(x[: ho * p, : wo * p], (ho, p, wo, p, c))
    windows = tf.reshape(tf.transpose(windows, (0, 2, 4, 1, 3)), (ho, wo, c, p * p))
    is_max = tf.cast(windows == tf.reduce_max(windows, axis=-1, keepdims=True), tf.int32)
    first = tf.cast((is_max == 1) & (tf.cumsum(is_max, axis=-1) == 1), x.dtype)
    routed = tf.reshape(first * g[..., None], (ho, wo, c, p, p))
    cropped = tf.reshape(tf.transpose(routed, (0, 3, 1, 4, 2)), (ho * p, wo * p, c))
    return tf.pad(cropped, [[0, h - ho * p], [0, w - wo * p], [0, 0]])
