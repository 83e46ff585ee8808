"""Segmentation: the UNet's border-aware weight map, the pixel-weighted loss and the metrics.

Weight map (Ronneberger et al., 2015, eq. 2), for an instance map ``labels`` ``(H, W)`` of
non-negative ints (0 = background, every positive value one instance; ids need not be
consecutive)::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

* ``d1``, ``d2``: Euclidean distances (pixel centre to pixel centre) from ``x`` to the nearest
  pixel of the nearest and of the second-nearest instance. If two instances are equally near,
  ``d1 == d2``.
* The border term applies to **background pixels only** (it is there to make the thin
  background gaps between touching cells expensive, as in the paper's figure 3); foreground
  pixels get ``w_c`` alone. With fewer than two instances there is no second instance and no
  border term (``w = w_c`` everywhere).
* ``w_c`` balances the two classes, background and foreground. ``class_weights=None``: inverse
  frequency normalised so that the weights average to 1 over the image,
  ``w_c = N / (n_classes_present * count_c)`` (scikit-learn's "balanced"); an image with a
  single class gets ``w_c = 1``. Or an explicit pair ``(w_background, w_foreground)``.

Pixel-weighted cross-entropy (the UNet paper's eq. 1 as the course trains it), for logits
``(..., H, W, K)``, labels ints ``(..., H, W)`` and weights ``(..., H, W)``::

    L = (1 / number of pixels) * sum over pixels of w(x) * -log softmax(z(x))[label(x)]

a mean over **all** pixels (not ``sum(w * CE) / sum(w)``), as ``workshop.models.unet``'s in-graph
loss; the log-softmax is computed stably (the largest logit subtracted first).

Metrics, from a confusion matrix ``cm`` ``(K, K)`` with ``cm[t, p]`` = the number of pixels of
true class ``t`` predicted as ``p`` (rows: truth, columns: prediction; as scikit-learn and
``tf.math.confusion_matrix``):

* pixel accuracy ``trace(cm) / cm.sum()``;
* IoU ``TP / (TP + FP + FN) = cm[c, c] / (row_c + col_c - cm[c, c])``;
* Dice ``2 TP / (2 TP + FP + FN) = 2 cm[c, c] / (row_c + col_c)``;
* a class absent from both truth and prediction has no IoU or Dice: **NaN**; mean IoU is the
  mean over the other classes (NaN if there are none). An empty ``cm`` gives NaN accuracy.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "confusion_matrix_loops",
    "confusion_matrix_numpy",
    "confusion_matrix_tf",
    "pixel_weighted_cross_entropy_numpy",
    "segmentation_metrics_loops",
    "segmentation_metrics_numpy",
    "segmentation_metrics_tf",
    "unet_weight_map_loops",
    "unet_weight_map_numpy",
    "unet_weight_map_tf",
    "weighted_cross_entropy_loops",
    "weighted_cross_entropy_numpy",
    "weighted_cross_entropy_tf",
]


# -- validation --------------------------------------------------------------------------------
def _int_array(a, name: str, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected {what} (integers), got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise ValueError(f"{name}: expected {what} (integers), got non-integer values")
    return arr.astype(np.int64)


def _instances(labels) -> np.ndarray:
    arr = _int_array(labels, "instance_labels", "an (H, W) instance map")
    if arr.ndim != 2:
        raise ValueError(f"instance_labels: expected shape (H, W), got {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"instance_labels: expected 0 (background) or positive instance ids, got {arr.min()}")
    return arr


def _weight_params(w0, sigma, class_weights):
    if not (np.isscalar(w0) and math.isfinite(w0) and w0 >= 0):
        raise ValueError(f"w0: expected a finite number >= 0, got {w0!r}")
    if not (np.isscalar(sigma) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma: expected a number > 0, got {sigma!r}")
    if class_weights is not None:
        try:
            pair = tuple(float(v) for v in class_weights)
        except (TypeError, ValueError):
            pair = ()
        if len(pair) != 2 or min(pair) < 0:
            raise ValueError(f"class_weights: expected None or (w_background, w_foreground) >= 0, got {class_weights!r}")
        return float(w0), float(sigma), pair
    return float(w0), float(sigma), None


def _class_weight_pair(n_background: int, n_foreground: int, class_weights) -> tuple[float, float]:
    if class_weights is not None:
        return class_weights
    n = n_background + n_foreground
    present = (n_background > 0) + (n_foreground > 0)
    w_bg = n / (present * n_background) if n_background else 0.0
    w_fg = n / (present * n_foreground) if n_foreground else 0.0
    return w_bg, w_fg


# -- weight map: loops -----------------------------------------------------------------------------
def unet_weight_map_loops(instance_labels, w0=10.0, sigma=5.0, class_weights=None) -> np.ndarray:
    """The UNet weight map, pixel by pixel (see the module docstring for the exact rule).

    Args:
      instance_labels: int ``(H, W)``, 0 = background, positive = instance id.
      w0, sigma: border weight and width in pixels (``w0 >= 0``, ``sigma > 0``).
      class_weights: ``None`` (balanced) or ``(w_background, w_foreground)``.

    Returns:
      float64 ``(H, W)``.
    """
    labels = _instances(instance_labels)
    w0, sigma, cw = _weight_params(w0, sigma, class_weights)
    h, w = labels.shape
    pixels: dict[int, list[tuple[int, int]]] = {}
    for i in range(h):
        for j in range(w):
            if labels[i, j] > 0:
                pixels.setdefault(int(labels[i, j]), []).append((i, j))
    n_fg = sum(len(p) for p in pixels.values())
    w_bg, w_fg = _class_weight_pair(h * w - n_fg, n_fg, cw)
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            if labels[i, j] > 0:
                out[i, j] = w_fg
                continue
            out[i, j] = w_bg
            if len(pixels) < 2:
                continue
            nearest = []
            for members in pixels.values():
                best = math.inf
                for (a, b) in members:
                    best = min(best, math.sqrt((i - a) ** 2 + (j - b) ** 2))
                nearest.append(best)
            nearest.sort()
            out[i, j] += w0 * math.exp(-(nearest[0] + nearest[1]) ** 2 / (2 * sigma ** 2))
    return out


# -- weight map: numpy -----------------------------------------------------------------------------
def unet_weight_map_numpy(instance_labels, w0=10.0, sigma=5.0, class_weights=None) -> np.ndarray:
    """The UNet weight map with one exact Euclidean distance transform per instance
    (``scipy.ndimage.distance_transform_edt``), then the two smallest distances per pixel.
    Same arguments and result as :func:`unet_weight_map_loops`."""
    from scipy import ndimage

    labels = _instances(instance_labels)
    w0, sigma, cw = _weight_params(w0, sigma, class_weights)
    foreground = labels > 0
    n_fg = int(foreground.sum())
    w_bg, w_fg = _class_weight_pair(labels.size - n_fg, n_fg, cw)
    out = np.where(foreground, w_fg, w_bg).astype(np.float64)
    ids = np.unique(labels[foreground])
    if len(ids) < 2:
        return out
    dist = np.stack([ndimage.distance_transform_edt(labels != i) for i in ids])  # (K, H, W)
    two = np.partition(dist, 1, axis=0)[:2]
    border = w0 * np.exp(-(two[0] + two[1]) ** 2 / (2 * sigma ** 2))
    return out + np.where(foreground, 0.0, border)


# -- weight map: TF --------------------------------------------------------------------------------
def unet_weight_map_tf(instance_labels, w0=10.0, sigma=5.0, class_weights=None):
    """The UNet weight map by brute force: all pixel-to-pixel distances ``(H*W, H*W)``.

    ``d1`` is the distance to the nearest foreground pixel; ``d2`` the distance to the nearest
    foreground pixel of *another* instance than that one (which is the second-nearest
    instance's distance, ties included). Memory is ``O((H*W)**2)``: small images only (a
    48 x 48 map needs ~40 MB). ``w0``, ``sigma``, ``class_weights`` stay Python values. A
    compiled graph cannot raise on data: negative ids are not rejected, they count as background.
    Returns a float64 ``(H, W)`` tensor; works under ``tf.function(jit_compile=True)``.
    """
    import tensorflow as tf

    w0, sigma, cw = _weight_params(w0, sigma, class_weights)
    labels = tf.convert_to_tensor(instance_labels)
    if labels.shape.rank is not None and labels.shape.rank != 2:
        raise ValueError(f"instance_labels: expected shape (H, W), got {labels.shape}")
    if not (labels.dtype.is_integer or labels.dtype.is_floating):
        raise ValueError(f"instance_labels: expected integers, got dtype {labels.dtype.name}")
    labels = tf.cast(labels, tf.int64)
    shape = tf.shape(labels)
    h, w = shape[0], shape[1]
    flat = tf.reshape(labels, [-1])
    foreground = flat > 0
    rows, cols = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    coords = tf.cast(tf.stack([tf.reshape(rows, [-1]), tf.reshape(cols, [-1])], axis=1), tf.float64)
    diff = coords[:, None, :] - coords[None, :, :]
    dist = tf.sqrt(tf.reduce_sum(diff * diff, axis=-1))                       # (P, P)
    inf = tf.constant(np.inf, tf.float64)
    dist = tf.where(foreground[None, :], dist, inf)                            # to instance pixels only
    d1 = tf.reduce_min(dist, axis=1)
    nearest_id = tf.gather(flat, tf.argmin(dist, axis=1))
    d2 = tf.reduce_min(tf.where(flat[None, :] == nearest_id[:, None], inf, dist), axis=1)
    has_two = tf.math.is_finite(d2)                                            # False with < 2 instances
    total = tf.where(has_two, d1 + d2, tf.zeros_like(d1))
    border = tf.where(has_two & ~foreground, w0 * tf.exp(-tf.square(total) / (2 * sigma ** 2)),
                      tf.zeros_like(d1))

    n_fg = tf.reduce_sum(tf.cast(foreground, tf.float64))
    n = tf.cast(tf.size(flat), tf.float64)
    n_bg = n - n_fg
    if cw is None:
        present = tf.cast(n_bg > 0, tf.float64) + tf.cast(n_fg > 0, tf.float64)
        w_bg = tf.math.divide_no_nan(n, present * n_bg)
        w_fg = tf.math.divide_no_nan(n, present * n_fg)
    else:
        w_bg, w_fg = tf.constant(cw[0], tf.float64), tf.constant(cw[1], tf.float64)
    out = tf.where(foreground, w_fg, w_bg) + border
    return tf.reshape(out, shape)


# -- confusion matrix ------------------------------------------------------------------------------
def _label_pair(y_true, y_pred, num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    t = _int_array(y_true, "y_true", "class labels")
    p = _int_array(y_pred, "y_pred", "class labels")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred: expected the same shape, got {t.shape} and {p.shape}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            bad = arr[(arr < 0) | (arr >= num_classes)][0]
            raise ValueError(f"{name}: expected labels in 0..{num_classes - 1}, got {bad}")
    return t.ravel(), p.ravel(), int(num_classes)


def confusion_matrix_loops(y_true, y_pred, num_classes) -> np.ndarray:
    """``cm[t, p]`` = number of pixels of true class ``t`` predicted as ``p``.

    Args:
      y_true, y_pred: int arrays of the same shape (any, e.g. ``(H, W)`` or ``(B, H, W)``),
        labels in ``0 .. num_classes - 1`` (else ValueError).
      num_classes: ``K``.

    Returns:
      int64 ``(K, K)``; rows are the truth, columns the prediction.
    """
    t, p, k = _label_pair(y_true, y_pred, num_classes)
    cm = np.zeros((k, k), np.int64)
    for a, b in zip(t.tolist(), p.tolist()):
        cm[a, b] += 1
    return cm


def confusion_matrix_numpy(y_true, y_pred, num_classes) -> np.ndarray:
    """:func:`confusion_matrix_loops` with one ``bincount`` of ``t * K + p``."""
    t, p, k = _label_pair(y_true, y_pred, num_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def confusion_matrix_tf(y_true, y_pred, num_classes):
    """:func:`confusion_matrix_loops` as a segment sum over ``t * K + p`` (``num_classes`` a
    Python int). Not ``tf.math.confusion_matrix`` (the tests use that as the oracle).

    A compiled graph cannot raise on data, so this tier does not reject out-of-range labels: a
    pixel whose true or predicted label is outside ``0 .. K-1`` is not counted. Returns an
    int64 ``(K, K)`` tensor; works under ``tf.function(jit_compile=True)``.
    """
    import tensorflow as tf

    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int (a Python value), got {num_classes!r}")
    k = int(num_classes)
    t = tf.reshape(tf.cast(y_true, tf.int64), [-1])
    p = tf.reshape(tf.cast(y_pred, tf.int64), [-1])
    if t.shape[0] is not None and p.shape[0] is not None and t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true and y_pred: expected the same shape, got {y_true.shape} and {y_pred.shape}")
    valid = (t >= 0) & (t < k) & (p >= 0) & (p < k)
    ids = tf.where(valid, t * k + p, k * k)                 # invalid pairs go to a dropped bin
    counts = tf.math.unsorted_segment_sum(tf.ones_like(ids), ids, k * k + 1)
    return tf.reshape(counts[: k * k], [k, k])


# -- metrics from the confusion matrix ---------------------------------------------------------
def _as_cm(cm) -> np.ndarray:
    arr = np.asarray(cm)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"cm: expected a square (K, K) confusion matrix, got shape {arr.shape}")
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise ValueError(f"cm: expected counts, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)) or (arr.size and arr.min() < 0):
        raise ValueError("cm: expected finite counts >= 0")
    return arr


def segmentation_metrics_loops(cm):
    """Pixel accuracy, per-class IoU and Dice, mean IoU from a confusion matrix, class by class.

    Args:
      cm: ``(K, K)`` counts, ``cm[t, p]`` (rows truth, columns prediction), ints or floats >= 0.

    Returns:
      ``(pixel_accuracy, iou, dice, mean_iou)``: float64 scalar, ``(K,)``, ``(K,)``, scalar.
      IoU and Dice are NaN for a class absent from both truth and prediction; mean IoU averages
      the others (NaN if none); accuracy is NaN for an all-zero ``cm``.
    """
    c = _as_cm(cm)
    k = c.shape[0]
    total = sum(c[i, j] for i in range(k) for j in range(k))
    correct = sum(c[i, i] for i in range(k))
    accuracy = correct / total if total > 0 else math.nan
    iou, dice = np.full(k, math.nan), np.full(k, math.nan)
    for i in range(k):
        row = sum(c[i, j] for j in range(k))
        col = sum(c[j, i] for j in range(k))
        if row + col > 0:
            iou[i] = c[i, i] / (row + col - c[i, i])
            dice[i] = 2 * c[i, i] / (row + col)
    defined = [v for v in iou if not math.isnan(v)]
    mean_iou = sum(defined) / len(defined) if defined else math.nan
    return float(accuracy), iou, dice, float(mean_iou)


def segmentation_metrics_numpy(cm):
    """:func:`segmentation_metrics_loops` on whole rows and columns at once."""
    c = _as_cm(cm)
    tp = np.diag(c)
    union = c.sum(axis=0) + c.sum(axis=1)              # row + col = 2 TP + FP + FN
    total = c.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = tp.sum() / total if total > 0 else math.nan
        iou = np.where(union > 0, tp / (union - tp), np.nan)
        dice = np.where(union > 0, 2 * tp / union, np.nan)
    mean_iou = float(np.nanmean(iou)) if np.any(union > 0) else math.nan
    return float(accuracy), iou, dice, mean_iou


def segmentation_metrics_tf(cm):
    """:func:`segmentation_metrics_loops` in TensorFlow: float64 tensors, NaN where undefined;
    works under ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    c = tf.cast(tf.convert_to_tensor(cm), tf.float64)
    if c.shape.rank is not None and (c.shape.rank != 2 or (c.shape[0] is not None and c.shape[0] != c.shape[1])):
        raise ValueError(f"cm: expected a square (K, K) confusion matrix, got shape {c.shape}")
    nan = tf.constant(np.nan, tf.float64)
    tp = tf.linalg.diag_part(c)
    union = tf.reduce_sum(c, axis=0) + tf.reduce_sum(c, axis=1)
    total = tf.reduce_sum(c)
    safe = tf.where(union > 0, union, tf.ones_like(union))
    accuracy = tf.where(total > 0, tf.reduce_sum(tp) / tf.where(total > 0, total, 1.0), nan)
    iou = tf.where(union > 0, tp / (safe - tp), nan)
    dice = tf.where(union > 0, 2 * tp / safe, nan)
    defined = tf.reduce_sum(tf.cast(union > 0, tf.float64))
    mean_iou = tf.where(defined > 0, tf.reduce_sum(tf.where(union > 0, iou, 0.0)) / tf.maximum(defined, 1.0), nan)
    return accuracy, iou, dice, mean_iou


# -- the UNet's pixel-weighted loss ---------------------------------------------------------------
def _loss_inputs(logits, labels, weights):
    z = np.asarray(logits, np.float64)
    y = _int_array(labels, "labels", "class labels")
    w = np.asarray(weights, np.float64)
    if z.ndim < 1 or z.shape[:-1] != y.shape or y.shape != w.shape:
        raise ValueError(f"expected logits (..., K) with labels and weights of shape {z.shape[:-1]}, "
                         f"got {y.shape} and {w.shape}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ValueError(f"labels: expected classes in 0..{z.shape[-1] - 1}, got {y[(y < 0) | (y >= z.shape[-1])][0]}")
    return z, y, w


def weighted_cross_entropy_loops(logits, labels, weights) -> float:
    """``mean over all pixels of weights * -log softmax(logits)[label]``, pixel by pixel.

    Args:
      logits: float ``(H, W, K)`` or ``(B, H, W, K)``, one score per class (no softmax);
      labels: int ``(H, W)`` / ``(B, H, W)`` in ``0..K-1``; weights: float, the labels' shape.
    Returns: a float: the sum of ``w * CE`` divided by the number of pixels (not by the weights'
      sum). ``log softmax`` as ``z - max(z) - log(sum(exp(z - max(z))))``: no overflow.
    """
    z, y, w = _loss_inputs(logits, labels, weights)
    k = z.shape[-1]
    z, y, w = z.reshape(-1, k).tolist(), y.ravel().tolist(), w.ravel().tolist()
    total = 0.0
    for scores, label, weight in zip(z, y, w):
        top = max(scores)
        log_sum = top + math.log(sum(math.exp(v - top) for v in scores))
        total += weight * (log_sum - scores[label])
    return total / len(y) if y else 0.0


def weighted_cross_entropy_numpy(logits, labels, weights) -> float:
    """Vectorized :func:`weighted_cross_entropy_loops` (same arguments and result)."""
    z, y, w = _loss_inputs(logits, labels, weights)
    if y.size == 0:
        return 0.0
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    nll = -np.take_along_axis(log_p, y[..., None], axis=-1)[..., 0]
    return float(np.mean(w * nll))


def weighted_cross_entropy_tf(logits, labels, weights):
    """:func:`weighted_cross_entropy_loops` in TensorFlow (``tf.reduce_logsumexp``, stable):
    a float scalar tensor in the logits' dtype; compiles with ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    z = tf.convert_to_tensor(logits)
    y = tf.cast(labels, tf.int32)
    w = tf.cast(weights, z.dtype)
    picked = tf.reduce_sum(z * tf.one_hot(y, tf.shape(z)[-1], dtype=z.dtype), axis=-1)
    nll = tf.reduce_logsumexp(z, axis=-1) - picked
    n = tf.maximum(tf.cast(tf.size(nll), z.dtype), tf.ones([], z.dtype))
    return tf.reduce_sum(w * nll) / n


# the name the model's tests have used for the numpy tier
pixel_weighted_cross_entropy_numpy = weighted_cross_entropy_numpy
