"""Chapters 05 and 08 (rpn_loss, weighted_cross_entropy): plausible learner mistakes in the losses."""

import math

import numpy as np

from . import plausible


# == rpn_loss ======================================================================================
def _smooth(d, beta):
    d = np.abs(d)
    return np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


def _bce(z, y):
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


@plausible("rpn_loss", "ignored anchors counted as negatives", "np.mean over every anchor, -1 as 0")
def rpn_loss_mean_all(objectness, pred_deltas, labels, target_deltas, beta=1 / 9):
    z, y = np.asarray(objectness, float), np.asarray(labels)
    obj = np.mean(_bce(z, (y == 1).astype(float))) if len(z) else 0.0
    box = _smooth(np.asarray(pred_deltas) - np.asarray(target_deltas), beta)[y == 1].sum() / max(len(z), 1)
    return obj, box


@plausible("rpn_loss", "box term divided by the positives", "box loss averaged over positives, loops",
           tier="loops")
def rpn_loss_box_per_positive_loops(objectness, pred_deltas, labels, target_deltas, beta=1 / 9):
    obj, box, n_sampled, n_pos = 0.0, 0.0, 0, 0
    for z, lab, p, t in zip(list(objectness), list(labels), list(pred_deltas), list(target_deltas)):
        if lab == -1:
            continue
        n_sampled += 1
        obj += max(z, 0) - z * (lab == 1) + math.log(1 + math.exp(-abs(z)))
        if lab == 1:
            n_pos += 1
            for a, b in zip(p, t):
                x = abs(a - b)
                box += 0.5 * x ** 2 / beta if x < beta else x - 0.5 * beta
    return obj / max(n_sampled, 1), box / max(n_pos, 1)


@plausible("rpn_loss", "beta = 1", "smooth L1 with PyTorch's default beta")
def rpn_loss_beta_one(objectness, pred_deltas, labels, target_deltas, beta=1 / 9):
    z, y = np.asarray(objectness, float), np.asarray(labels)
    d = np.abs(np.asarray(pred_deltas) - np.asarray(target_deltas))
    sl1 = np.where(d < 1, 0.5 * d ** 2, d - 0.5)
    n = max((y >= 0).sum(), 1)
    return _bce(z, y == 1)[y >= 0].sum() / n, sl1[y == 1].sum() / n


@plausible("rpn_loss", "sigmoid applied twice", "probabilities into the from-logits formula")
def rpn_loss_sigmoid_twice(objectness, pred_deltas, labels, target_deltas, beta=1 / 9):
    p = 1 / (1 + np.exp(-np.asarray(objectness, float)))
    y = np.asarray(labels)
    n = max((y >= 0).sum(), 1)
    bce = np.maximum(p, 0) - p * (y == 1) + np.log(1 + np.exp(-np.abs(p)))
    return (bce * (y >= 0)).sum() / n, _smooth(np.asarray(pred_deltas) - target_deltas, beta)[y == 1].sum() / n


@plausible("rpn_loss", "unstable cross-entropy", "log of the sigmoid, masked by a product")
def rpn_loss_naive_log(objectness, pred_deltas, labels, target_deltas, beta=1 / 9):
    y = np.asarray(labels)
    with np.errstate(all="ignore"):
        p = 1 / (1 + np.exp(-np.asarray(objectness, float)))
        t = (y == 1).astype(float)
        bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
        n = max(np.sum(y >= 0), 1)
        return np.sum(bce * (y >= 0)) / n, np.sum(_smooth(np.asarray(pred_deltas) - target_deltas, beta)[y == 1]) / n


@plausible("rpn_loss", "regression on negatives", "box mask labels >= 0")
def rpn_loss_box_on_sampled(objectness, pred_deltas, labels, target_deltas, beta=1 / 9):
    z, y = np.asarray(objectness, float), np.asarray(labels)
    keep = y >= 0
    n = max(keep.sum(), 1)
    return _bce(z[keep], y[keep] == 1).sum() / n, _smooth(np.asarray(pred_deltas)[keep] - np.asarray(target_deltas)[keep], beta).sum() / n


@plausible("rpn_loss", None, "squared error without the 0.5")
def rpn_loss_squared(objectness, pred_deltas, labels, target_deltas, beta=1 / 9):
    z, y = np.asarray(objectness, float), np.asarray(labels)
    n = max((y >= 0).sum(), 1)
    d = np.asarray(pred_deltas) - np.asarray(target_deltas)
    return _bce(z, y == 1)[y >= 0].sum() / n, (d[y == 1] ** 2).sum() / n


@plausible("rpn_loss", None, "labels used as targets, -1 included, loops", tier="loops")
def rpn_loss_raw_labels_loops(objectness, pred_deltas, labels, target_deltas, beta=1 / 9):
    obj = box = 0.0
    n = 0
    for z, lab, p, t in zip(list(objectness), list(labels), list(pred_deltas), list(target_deltas)):
        obj += max(z, 0) - z * lab + math.log1p(math.exp(-abs(z)))
        n += lab >= 0
        if lab == 1:
            box += sum(float(_smooth(a - b, beta)) for a, b in zip(p, t))
    return obj / max(n, 1), box / max(n, 1)


@plausible("rpn_loss", None, "box loss averaged over the 4 coordinates too")
def rpn_loss_mean_coordinates(objectness, pred_deltas, labels, target_deltas, beta=1 / 9):
    z, y = np.asarray(objectness, float), np.asarray(labels)
    n = max((y >= 0).sum(), 1)
    sl1 = _smooth(np.asarray(pred_deltas) - np.asarray(target_deltas), beta)
    return _bce(z, y == 1)[y >= 0].sum() / n, sl1[y == 1].sum() / (4 * n)


# == weighted_cross_entropy ========================================================================
def _log_softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _pick(log_p, labels):
    return np.take_along_axis(log_p, np.asarray(labels)[..., None], axis=-1)[..., 0]


@plausible("weighted_cross_entropy", "unstable log-softmax", "log of the softmax")
def wce_naive_softmax(logits, labels, weights):
    z = np.asarray(logits, float)
    with np.errstate(all="ignore"):
        p = np.exp(z) / np.sum(np.exp(z), axis=-1, keepdims=True)
        return np.mean(np.asarray(weights) * -np.log(_pick(p, labels)))


@plausible("weighted_cross_entropy", "normalised by the weights", "a weighted average")
def wce_weighted_average(logits, labels, weights):
    w = np.asarray(weights, float)
    return float(np.sum(w * -_pick(_log_softmax(np.asarray(logits, float)), labels)) / np.sum(w))


@plausible("weighted_cross_entropy", "weights ignored", "plain cross-entropy, loops", tier="loops")
def wce_no_weights_loops(logits, labels, weights):
    z = np.asarray(logits, float)
    rows, ys = z.reshape(-1, z.shape[-1]), np.asarray(labels).ravel()
    total = 0.0
    for row, y in zip(rows, ys):
        m = max(row)
        total += m + math.log(sum(math.exp(v - m) for v in row)) - row[y]
    return total / len(ys)


@plausible("weighted_cross_entropy", "averaged over the classes too", "np.mean of one-hot * log p")
def wce_mean_with_classes(logits, labels, weights):
    z = np.asarray(logits, float)
    onehot = np.eye(z.shape[-1])[np.asarray(labels)]
    return float(np.mean(np.asarray(weights)[..., None] * onehot * -_log_softmax(z)))


@plausible("weighted_cross_entropy", "softmax over the first axis", "axis=0")
def wce_axis0(logits, labels, weights):
    return float(np.mean(np.asarray(weights) * -_pick(_log_softmax(np.asarray(logits, float), axis=0), labels)))


@plausible("weighted_cross_entropy", None, "softmax over axis 1")
def wce_axis1(logits, labels, weights):
    return float(np.mean(np.asarray(weights) * -_pick(_log_softmax(np.asarray(logits, float), axis=1), labels)))


@plausible("weighted_cross_entropy", None, "mean weight times mean cross-entropy")
def wce_product_of_means(logits, labels, weights):
    return float(np.mean(weights) * np.mean(-_pick(_log_softmax(np.asarray(logits, float)), labels)))


@plausible("weighted_cross_entropy", None, "the minus sign forgotten")
def wce_no_minus(logits, labels, weights):
    return float(np.mean(np.asarray(weights) * _pick(_log_softmax(np.asarray(logits, float)), labels)))
