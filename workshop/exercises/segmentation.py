"""Chapter 08: the UNet's border-aware weight map, its pixel-weighted loss, the confusion matrix and segmentation metrics.

The wrong implementations are self-contained numpy/scipy (the grader hides ``workshop.reference``).
The rules (background-only border term, balanced class weights, NaN for absent classes) are
stated in ``workshop/reference/segmentation.py``'s docstring and in the notebook.
"""

from __future__ import annotations

import numpy as np

from . import register
from .spec import Case, Exercise, Mistake, Output

REF = "workshop.reference.segmentation"
CHAPTER = "08_unet"


# == the weight map ==================================================================================
def _wrong_weight_map(instance_labels, w0=10.0, sigma=5.0, class_weights=None, *, mistake: str):
    from scipy import ndimage

    labels = np.asarray(instance_labels).astype(np.int64)
    fg = labels > 0
    n, n_fg = labels.size, int(fg.sum())
    n_bg = n - n_fg
    if class_weights is not None:
        w_bg, w_fg = (float(v) for v in class_weights)
    elif mistake == "no class weights":
        w_bg = w_fg = 1.0
    else:
        present = (n_bg > 0) + (n_fg > 0)
        share = 1 if mistake == "unnormalised" else present
        w_bg = n / (share * n_bg) if n_bg else 0.0
        w_fg = n / (share * n_fg) if n_fg else 0.0
    out = np.where(fg, w_fg, w_bg).astype(np.float64)
    ids = np.unique(labels[fg])
    if len(ids) == 0 or (len(ids) < 2 and mistake != "d1 only"):
        return out
    dist = np.sort(np.stack([ndimage.distance_transform_edt(labels != i) for i in ids]), axis=0)
    if mistake == "d1 only":
        border = w0 * np.exp(-dist[0] ** 2 / (2 * sigma ** 2))
    elif mistake == "sigma not squared":
        border = w0 * np.exp(-(dist[0] + dist[1]) ** 2 / (2 * sigma))
    else:
        border = w0 * np.exp(-(dist[0] + dist[1]) ** 2 / (2 * sigma ** 2))
    if mistake == "border on foreground":
        return out + border
    return out + np.where(fg, 0.0, border)


def _wm(mistake: str):
    def wrong(instance_labels, w0=10.0, sigma=5.0, class_weights=None):
        return _wrong_weight_map(instance_labels, w0, sigma, class_weights, mistake=mistake)
    wrong.__name__ = "unet_weight_map_" + mistake.replace(" ", "_")
    return wrong


def _rectangles(rng: np.random.Generator, shape, n: int, ids) -> np.ndarray:
    labels = np.zeros(shape, np.int64)
    for i in range(n):
        r, c = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
        labels[r:r + int(rng.integers(1, 5)), c:c + int(rng.integers(1, 5))] = ids[i]
    return labels


def _weight_cases() -> list[Case]:
    row = np.array([[1, 0, 0, 2, 0]])
    a = np.exp(-4.5)
    row_expected = np.array([[1.25, 5 / 6 + 10 * a, 5 / 6 + 10 * a, 1.25, 5 / 6 + 10 * np.exp(-12.5)]])
    cells = np.zeros((8, 9), np.int64)
    cells[1:7, 1:4] = 4          # two cells one pixel apart, a third one further away
    cells[1:5, 5:8] = 9
    cells[6:8, 6:9] = 2
    one = np.zeros((6, 6), np.int64)
    one[2:4, 1:5] = 7
    return [
        Case("one row: two instances, w0=10, sigma=1", (row,), {"w0": 10.0, "sigma": 1.0}, expected=row_expected,
             about="w_c: 5/(2*2) = 1.25 on the 2 foreground pixels, 5/(2*3) on the 3 background ones; "
                   "pixel 1: d1 = 1, d2 = 2"),
        Case("no instances: all ones", (np.zeros((3, 4), np.int64),), {"w0": 10.0, "sigma": 5.0},
             expected=np.ones((3, 4)), about="one class present: w_c = 1, and no border term"),
        Case("one instance: class weights only", (one,), {"w0": 10.0, "sigma": 2.0},
             expected=np.where(one > 0, 36 / 16, 36 / 56),
             about="the border term needs two instances"),
        Case("three cells, a one-pixel gap, sigma=3", (cells,), {"w0": 10.0, "sigma": 3.0}),
        Case("three cells, explicit class weights (1, 1)", (cells,),
             {"w0": 5.0, "sigma": 2.0, "class_weights": (1.0, 1.0)}),
        Case("touching instances, no gap", (np.array([[1, 1, 2, 2, 0, 0]] * 3),), {"w0": 8.0, "sigma": 4.0},
             public=False),
        Case("all foreground", (np.array([[1, 2], [3, 3]]),), {"w0": 10.0, "sigma": 5.0},
             expected=np.ones((2, 2)), public=False),
    ]


def _weight_random(rng: np.random.Generator) -> Case:
    shape = tuple(int(v) for v in rng.integers(5, 13, 2))
    n = int(rng.integers(0, 5))
    ids = rng.choice(np.arange(1, 40), size=max(n, 1), replace=False)
    labels = _rectangles(rng, shape, n, ids)
    kwargs = {"w0": float(rng.uniform(1, 10)), "sigma": float(rng.uniform(1, 5))}
    if rng.random() < 0.2:
        kwargs["class_weights"] = (float(rng.uniform(0.2, 2)), float(rng.uniform(0.2, 2)))
    return Case("", (labels,), kwargs)


UNET_WEIGHT_MAP = register(Exercise(
    name="unet_weight_map",
    chapter=CHAPTER,
    minutes={"loops": 25, "numpy": 25, "tf": 40},
    stretch=("tf",),
    signature="unet_weight_map(instance_labels, w0=10.0, sigma=5.0, class_weights=None)",
    summary="The UNet paper's border-aware weight map: balanced class weights plus a "
            "separation term between touching instances.",
    tiers={"loops": f"{REF}:unet_weight_map_loops", "numpy": f"{REF}:unet_weight_map_numpy",
           "tf": f"{REF}:unet_weight_map_tf"},
    edge_cases=_weight_cases,
    random_case=_weight_random,
    outputs=(Output("weights", "float", rtol=1e-4, atol=1e-4, strict_atol=1e-6),),
    mistakes=(
        Mistake("d1 only",
                "Your border term uses only d1, the distance to the nearest instance. The weight is "
                "w0 * exp(-(d1 + d2)**2 / (2 sigma**2)) with d2 the distance to the second-nearest instance, "
                "so it is large only in gaps *between* two instances (and absent with fewer than two).",
                wrong=_wm("d1 only")),
        Mistake("sigma not squared",
                "Your border term divides by 2*sigma; the Gaussian's denominator is 2 * sigma**2.",
                wrong=_wm("sigma not squared")),
        Mistake("border on foreground",
                "You added the border term to foreground pixels too. It separates touching instances: apply "
                "it to background pixels only; instance pixels get the class weight alone.",
                wrong=_wm("border on foreground")),
        Mistake("no class weights",
                "Your w_c is 1 everywhere. With class_weights=None, balance background and foreground by "
                "inverse frequency: w_c = N / (n_classes_present * count_c).",
                wrong=_wm("no class weights")),
        Mistake("class weights not normalised",
                "Your class weights are N / count_c, twice too large when both classes are present: divide "
                "by the number of classes present, N / (n_classes_present * count_c), so they average to 1.",
                wrong=_wm("unnormalised")),
    ),
    tf_static=("w0", "sigma", "class_weights"),
    n_hidden_random=20,
))


# == the confusion matrix ============================================================================
def _cm_transposed(y_true, y_pred, num_classes):
    t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    return np.bincount(p * num_classes + t, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _cm_classes_from_labels(y_true, y_pred, num_classes):
    t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    k = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _cm_cases() -> list[Case]:
    t = np.array([[0, 0, 1], [2, 2, 1]])
    p = np.array([[0, 1, 1], [2, 0, 1]])
    rng = np.random.default_rng(5)
    tb = rng.integers(0, 3, (2, 3, 4))
    pb = np.where(rng.random((2, 3, 4)) < 0.7, tb, rng.integers(0, 3, (2, 3, 4)))
    return [
        Case("2x3 map, 3 classes", (t, p, 3), expected=np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]]),
             about="rows: true class, columns: predicted class"),
        Case("class 3 in neither map, num_classes=4", (t, p, 4),
             expected=np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]),
             about="the size comes from num_classes, not from the labels"),
        Case("batch of 2 maps", (tb, pb, 3)),
        Case("everything wrong", (np.zeros((2, 2), np.int64), np.ones((2, 2), np.int64), 2),
             expected=np.array([[0, 4], [0, 0]]), public=False),
        Case("no pixels", (np.zeros((0,), np.int64), np.zeros((0,), np.int64), 2),
             expected=np.zeros((2, 2), np.int64), public=False),
    ]


def _cm_random(rng: np.random.Generator) -> Case:
    k = int(rng.integers(1, 7))
    shape = tuple(int(v) for v in rng.integers(1, 9, 2))
    if rng.random() < 0.3:
        shape = (int(rng.integers(1, 4)),) + shape
    top = int(rng.integers(1, k + 1))                       # some high classes may be absent
    t = rng.integers(0, top, shape)
    p = np.where(rng.random(shape) < 0.6, t, rng.integers(0, k, shape))
    return Case("", (t, p, k))


CONFUSION_MATRIX = register(Exercise(
    name="confusion_matrix",
    chapter=CHAPTER,
    minutes={"loops": 10, "numpy": 10, "tf": 10},
    signature="confusion_matrix(y_true, y_pred, num_classes)",
    summary="cm[t, p]: how many pixels of true class t were predicted as p.",
    tiers={"loops": f"{REF}:confusion_matrix_loops", "numpy": f"{REF}:confusion_matrix_numpy",
           "tf": f"{REF}:confusion_matrix_tf"},
    edge_cases=_cm_cases,
    random_case=_cm_random,
    outputs=(Output("cm", "int"),),
    mistakes=(
        Mistake("transposed",
                "Your matrix is transposed: rows are the true class and columns the predicted class, "
                "cm[y_true, y_pred] += 1 (as scikit-learn and tf.math.confusion_matrix).", wrong=_cm_transposed),
        Mistake("classes from the labels",
                "Your matrix is too small when the highest classes do not occur: its size is "
                "(num_classes, num_classes), not max(label) + 1 (np.bincount needs minlength).",
                wrong=_cm_classes_from_labels),
    ),
    tf_static=("num_classes",),
    answer_calls=("sklearn.metrics.confusion_matrix", "tensorflow.math.confusion_matrix"),
))


# == metrics from the confusion matrix ===============================================================
def _metrics(cm, *, mistake: str = ""):
    c = np.asarray(cm, np.float64)
    tp, row, col = np.diag(c), c.sum(axis=1), c.sum(axis=0)
    union = row + col
    present = union > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        if mistake == "mean class accuracy":
            accuracy = float(np.mean(tp[row > 0] / row[row > 0])) if np.any(row > 0) else np.nan
        else:
            accuracy = float(tp.sum() / c.sum()) if c.sum() > 0 else np.nan
        if mistake == "union counts TP twice":
            iou = tp / union
        elif mistake == "IoU as recall":
            iou = tp / row
        else:
            iou = tp / (union - tp)
        dice = iou.copy() if mistake == "Dice as IoU" else 2 * tp / union
    iou, dice = np.where(present, iou, np.nan), np.where(present, dice, np.nan)
    if mistake == "absent as zero":
        iou, dice = np.nan_to_num(iou), np.nan_to_num(dice)
    if mistake in ("absent as zero", "mean over all classes"):
        mean_iou = float(np.mean(np.nan_to_num(iou)))
    else:
        mean_iou = float(np.nanmean(iou)) if present.any() else np.nan
    return accuracy, iou, dice, mean_iou


def _mm(mistake: str):
    def wrong(cm):
        return _metrics(cm, mistake=mistake)
    wrong.__name__ = "segmentation_metrics_" + mistake.replace(" ", "_")
    return wrong


def _metric_cases() -> list[Case]:
    two = np.array([[3, 1], [2, 4]])
    absent = np.array([[5, 0, 2, 1], [0, 0, 0, 0], [1, 0, 6, 0], [0, 0, 3, 0]])
    return [
        Case("2 classes", (two,), expected=(0.7, np.array([3 / 6, 4 / 7]), np.array([6 / 9, 8 / 11]),
                                               (3 / 6 + 4 / 7) / 2),
             about="IoU_0 = 3 / (4 + 5 - 3), Dice_0 = 2*3 / (4 + 5)"),
        Case("class 1 absent in both, class 3 never predicted", (absent,),
             expected=(11 / 18, np.array([5 / 9, np.nan, 6 / 12, 0.0]), np.array([10 / 14, np.nan, 12 / 18, 0.0]),
                       (5 / 9 + 6 / 12 + 0.0) / 3),
             about="absent from truth and prediction: NaN, left out of the mean; missed: IoU 0"),
        Case("perfect prediction, unbalanced", (np.diag([10, 1, 0, 3]),)),
        Case("nothing right", (np.array([[0, 4], [2, 0]]),), public=False),
        Case("empty matrix", (np.zeros((3, 3), np.int64),), public=False,
             expected=(np.nan, np.full(3, np.nan), np.full(3, np.nan), np.nan)),
        Case("one class", (np.array([[7]]),), public=False),
    ]


def _metric_random(rng: np.random.Generator) -> Case:
    k = int(rng.integers(1, 7))
    cm = rng.integers(0, 20, (k, k)) + np.diag(rng.integers(0, 40, k))
    for c in range(k):
        if rng.random() < 0.2:
            cm[c, :] = 0
            if rng.random() < 0.5:
                cm[:, c] = 0
    return Case("", (cm,))


SEGMENTATION_METRICS = register(Exercise(
    name="segmentation_metrics",
    chapter=CHAPTER,
    minutes={"loops": 10, "numpy": 10, "tf": 10},
    signature="segmentation_metrics(cm) -> (pixel_accuracy, iou, dice, mean_iou)",
    summary="Pixel accuracy, per-class IoU and Dice (NaN for absent classes) and mean IoU "
            "from a confusion matrix.",
    tiers={"loops": f"{REF}:segmentation_metrics_loops", "numpy": f"{REF}:segmentation_metrics_numpy",
           "tf": f"{REF}:segmentation_metrics_tf"},
    edge_cases=_metric_cases,
    random_case=_metric_random,
    outputs=(Output("pixel_accuracy"), Output("iou"), Output("dice"), Output("mean_iou")),
    mistakes=(
        Mistake("Dice as IoU",
                "Your Dice equals your IoU. Dice = 2 TP / (2 TP + FP + FN) = 2 cm[c, c] / (row_c + col_c); "
                "it is never smaller than IoU.", wrong=_mm("Dice as IoU")),
        Mistake("union counts TP twice",
                "Your IoU divides by row_c + col_c, which counts the true positives twice. The union is "
                "row_c + col_c - cm[c, c] = TP + FP + FN.", wrong=_mm("union counts TP twice")),
        Mistake("IoU as recall",
                "Your IoU is TP / (TP + FN), the recall: the union also contains the false positives "
                "(the column), IoU = cm[c, c] / (row_c + col_c - cm[c, c]).", wrong=_mm("IoU as recall")),
        Mistake("absent as zero",
                "A class absent from both truth and prediction has no IoU or Dice: return NaN for it (0/0) "
                "and leave it out of the mean IoU, instead of scoring it 0.", wrong=_mm("absent as zero")),
        Mistake("mean over all classes",
                "Your mean IoU counts the classes with NaN IoU as 0: average over the classes that occur "
                "(np.nanmean).", wrong=_mm("mean over all classes")),
        Mistake("mean class accuracy",
                "Your pixel accuracy is the mean of the per-class accuracies. Pixel accuracy is the fraction "
                "of all pixels that are right: trace(cm) / cm.sum().", wrong=_mm("mean class accuracy")),
    ),
    answer_calls=("sklearn.metrics.jaccard_score", "sklearn.metrics.f1_score",
                  "keras.metrics.MeanIoU", "keras.metrics.IoU"),
))


# == the pixel-weighted cross-entropy ================================================================
def _wce(logits, labels, weights, *, mistake: str = ""):
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels).astype(np.int64)
    w = np.asarray(weights, np.float64)
    if mistake == "weights on the logits":
        z = z * w[..., None]
    with np.errstate(all="ignore"):
        if mistake == "softmax over the first axis":
            z = z - z.max(axis=0, keepdims=True)
            log_p = z - np.log(np.exp(z).sum(axis=0, keepdims=True))
        elif mistake == "softmax over all values":
            z = z - z.max()
            log_p = z - np.log(np.exp(z).sum())
        elif mistake == "unstable":
            log_p = np.log(np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True))
        else:
            z = z - z.max(axis=-1, keepdims=True)
            log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        nll = -np.take_along_axis(log_p, y[..., None], axis=-1)[..., 0]
        if mistake == "weights ignored":
            w = np.ones_like(w)
        if y.size == 0:
            return 0.0
        if mistake == "normalised by the weights":
            return float((w * nll).sum() / w.sum())
        if mistake == "mean over weighted pixels":
            return float((w * nll).sum() / max((w > 0).sum(), 1))
        if mistake == "averaged over the classes too":
            return float((w * nll).sum() / (nll.size * z.shape[-1]))
        return float(np.mean(w * nll))


def _wc(mistake: str):
    def wrong(logits, labels, weights):
        return _wce(logits, labels, weights, mistake=mistake)
    wrong.__name__ = "weighted_cross_entropy_" + mistake.replace(" ", "_")
    return wrong


def _non_finite(case, received, expected) -> bool:
    from .spec import to_array

    r = np.asarray(to_array(received), np.float64)
    return bool(np.isfinite(np.asarray(expected, np.float64)).all() and r.size and not np.isfinite(r).all())


def _wce_cases() -> list[Case]:
    l2, l3 = np.log(2.0), np.log(3.0)
    logits = np.array([[[0.0, 0.0, 0.0], [l2, 0.0, 0.0]],
                       [[0.0, l3, 0.0], [5.0, 5.0, 5.0 + l2]]])
    labels = np.array([[2, 0], [1, 2]])
    weights = np.array([[1.0, 3.0], [0.5, 0.0]])
    big = np.array([[[800.0, 0.0], [-700.0, 700.0], [1000.0, 1000.0]]])
    rng = np.random.default_rng(8)
    zb = np.round(rng.normal(0, 2, (2, 3, 4, 3)), 3)
    yb = rng.integers(0, 3, (2, 3, 4))
    wb = np.round(rng.uniform(0, 4, (2, 3, 4)), 3)
    return [
        Case("worked example: 2x2 pixels, 3 classes", (logits, labels, weights),
             expected=(l3 + 3 * l2 + 0.5 * np.log(5 / 3) + 0.0) / 4,
             about="softmaxes (1/3, 1/3, 1/3), (1/2, 1/4, 1/4), (1/5, 3/5, 1/5), (1/4, 1/4, 1/2); "
                   "the labels' probabilities 1/3, 1/2, 3/5, 1/2 with weights 1, 3, 0.5, 0: "
                   "(ln 3 + 3 ln 2 + 0.5 ln 5/3 + 0) / 4 pixels (the weight-0 pixel counts)"),
        Case("large logits: a stable log-softmax", (big, np.array([[1, 1, 0]]), np.array([[1.0, 2.0, 1.0]])),
             expected=(800.0 + 0.0 + l2) / 3,
             about="exp(800) overflows float64: subtract each pixel's largest logit first "
                   "(pixel 0: CE 800, pixel 1: about 0, pixel 2: ln 2)"),
        Case("a batch of 2 images (B, H, W, K)", (zb, yb, wb)),
        Case("weights all 1: the plain cross-entropy", (zb[0], yb[0], np.ones((3, 4)))),
        Case("one class: zero loss", (np.zeros((2, 2, 1)), np.zeros((2, 2), np.int64), np.full((2, 2), 3.0)),
             expected=0.0, public=False),
        Case("large logits in a batch", (zb * 400, yb, wb), public=False),
    ]


def _wce_random(rng: np.random.Generator) -> Case:
    k = int(rng.integers(2, 7))
    shape = tuple(int(v) for v in rng.integers(1, 9, 2))
    if rng.random() < 0.4:
        shape = (int(rng.integers(1, 4)),) + shape
    logits = rng.normal(0, float(rng.choice([1.0, 3.0])), shape + (k,))
    labels = rng.integers(0, k, shape)
    weights = rng.uniform(0, 5, shape) * (rng.random(shape) < 0.8)
    return Case("", (logits, labels, weights))


WEIGHTED_CROSS_ENTROPY = register(Exercise(
    name="weighted_cross_entropy",
    chapter=CHAPTER,
    minutes={"loops": 10, "numpy": 10, "tf": 15},
    signature="weighted_cross_entropy(logits, labels, weights) -> loss",
    summary="The UNet's pixel-weighted loss: softmax cross-entropy per pixel times its weight, "
            "averaged over all pixels.",
    tiers={"loops": f"{REF}:weighted_cross_entropy_loops", "numpy": f"{REF}:weighted_cross_entropy_numpy",
           "tf": f"{REF}:weighted_cross_entropy_tf"},
    edge_cases=_wce_cases,
    random_case=_wce_random,
    outputs=(Output("loss", "float", rtol=1e-4, atol=1e-5, strict_atol=1e-9),),
    mistakes=(
        Mistake("weights ignored",
                "Your loss is the plain cross-entropy: multiply each pixel's -log p(label) by its weight "
                "weights[..., y, x] before averaging.", wrong=_wc("weights ignored")),
        Mistake("weights on the logits",
                "You multiplied the logits by the weights: the weight scales each pixel's loss, "
                "w * -log softmax(z)[label], not its scores (which would change the softmax itself).",
                wrong=_wc("weights on the logits")),
        Mistake("softmax over the first axis",
                "Your softmax normalises over the first axis: the classes are on the *last* axis "
                "(logits (..., H, W, K)), so each pixel's K scores are normalised together "
                "(axis=-1, keepdims=True).", wrong=_wc("softmax over the first axis")),
        Mistake("softmax over all values",
                "Your softmax normalises over the whole array (no axis): normalise each pixel's K "
                "scores, over the last axis (axis=-1, keepdims=True).", wrong=_wc("softmax over all values")),
        Mistake("normalised by the weights",
                "You divided by the sum of the weights; the course's loss is the mean over all pixels, "
                "sum(w * CE) / number of pixels (the weight maps already average about 1), as the model's "
                "in-graph loss.", wrong=_wc("normalised by the weights")),
        Mistake("mean over weighted pixels",
                "You divided by the number of pixels with a non-zero weight; divide by the number of "
                "*all* pixels (a weight-0 pixel counts, with loss 0).", wrong=_wc("mean over weighted pixels")),
        Mistake("averaged over the classes too",
                "Your loss is K times too small: np.mean over a (..., K) array of one-hot * log p also "
                "divides by the classes. Pick each pixel's -log p(label), then average over pixels.",
                wrong=_wc("averaged over the classes too")),
        Mistake("unstable log-softmax",
                "Your loss is inf or NaN with large logits: exp(800) overflows. Compute log softmax as "
                "z - m - log(sum(exp(z - m))) with m each pixel's largest logit (the log-sum-exp trick; "
                "tf.reduce_logsumexp in TensorFlow).", wrong=_wc("unstable"), detect=_non_finite),
    ),
    answer_calls=("workshop.models.unet.pixel_weighted_cross_entropy",),
))
