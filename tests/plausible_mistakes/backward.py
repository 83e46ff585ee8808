"""Chapter 01 (max_pool2d_backward): plausible learner mistakes in the max pooling's gradient."""

import numpy as np

from . import plausible


def _loops(x, grad_out, p, *, tie="first", use_grad=True, last_window=True, split=False):
    """A learner's window-by-window gradient: tie "first" (strictly larger replaces), "last"
    (>= replaces)."""
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(grad_out, dtype=np.float64)
    H, W, C = x.shape
    out = np.zeros_like(x)
    stop_h, stop_w = (H - p + 1, W - p + 1) if last_window else (H - p, W - p)
    for c in range(C):
        for i, top in enumerate(range(0, stop_h, p)):
            for j, left in enumerate(range(0, stop_w, p)):
                bi, bj, bv = top, left, x[top, left, c]
                ties = []
                for a in range(top, top + p):
                    for b in range(left, left + p):
                        v = x[a, b, c]
                        if v > bv or (tie == "last" and v == bv):
                            bi, bj, bv = a, b, v
                for a in range(top, top + p):
                    for b in range(left, left + p):
                        if x[a, b, c] == bv:
                            ties.append((a, b))
                up = g[i, j, c] if use_grad else 1.0
                if split:
                    for a, b in ties:
                        out[a, b, c] += up / len(ties)
                else:
                    out[bi, bj, c] += up
    return out


@plausible("max_pool2d_backward", "gradient to the last of equal maxima", "running max replaced on >=, loops",
           tier="loops")
def max_pool2d_backward_last_tie_loops(x, grad_out, pool_size=2):
    return _loops(x, grad_out, pool_size, tie="last")


@plausible("max_pool2d_backward", "upstream gradient not used", "1 at each window's maximum, loops", tier="loops")
def max_pool2d_backward_mask_loops(x, grad_out, pool_size=2):
    return _loops(x, grad_out, pool_size, use_grad=False)


def _upsample(a, p):
    return np.repeat(np.repeat(a, p, axis=0), p, axis=1)


@plausible("max_pool2d_backward", "gradient to every equal maximum", "x == np.repeat of the pooled max")
def max_pool2d_backward_mask_equal(x, grad_out, pool_size=2):
    x = np.asarray(x, dtype=np.float64)
    p = pool_size
    H, W, C = x.shape
    ho, wo = H // p, W // p
    crop = x[:ho * p, :wo * p]
    pooled = crop.reshape(ho, p, wo, p, C).max(axis=(1, 3))
    out = np.zeros_like(x)
    out[:ho * p, :wo * p] = (crop == _upsample(pooled, p)) * _upsample(np.asarray(grad_out, float), p)
    return out


@plausible("max_pool2d_backward", "gradient averaged like average pooling", "np.repeat(grad_out) / p**2, float32")
def max_pool2d_backward_average(x, grad_out, pool_size=2):
    x = np.asarray(x, dtype=np.float32)
    p = pool_size
    ho, wo = x.shape[0] // p, x.shape[1] // p
    out = np.zeros_like(x)
    out[:ho * p, :wo * p] = _upsample(np.asarray(grad_out, np.float32), p) / (p * p)
    return out


@plausible("max_pool2d_backward", "ties broken column by column", "argmax of the (p, p) window transposed")
def max_pool2d_backward_column_major(x, grad_out, pool_size=2):
    x = np.asarray(x, dtype=np.float64)
    p = pool_size
    H, W, C = x.shape
    ho, wo = H // p, W // p
    win = x[:ho * p, :wo * p].reshape(ho, p, wo, p, C).transpose(0, 2, 4, 3, 1)   # (ho, wo, C, col, row)
    flat = win.reshape(ho, wo, C, p * p).argmax(axis=-1)
    col, row = np.divmod(flat, p)
    out = np.zeros_like(x)
    i, j, c = np.meshgrid(np.arange(ho), np.arange(wo), np.arange(C), indexing="ij")
    out[i * p + row, j * p + col, c] = np.asarray(grad_out, float)
    return out


@plausible("max_pool2d_backward", "windows taken from the wrong axes", "reshape(ho, wo, p * p, C)")
def max_pool2d_backward_reshape(x, grad_out, pool_size=2):
    x = np.asarray(x, dtype=np.float64)
    p = pool_size
    H, W, C = x.shape
    ho, wo = H // p, W // p
    win = x[:ho * p, :wo * p].reshape(ho, wo, p * p, C)
    onehot = np.eye(p * p)[win.argmax(axis=2)]                     # (ho, wo, C, p * p)
    grads = onehot * np.asarray(grad_out, float)[..., None]
    out = np.zeros_like(x)
    out[:ho * p, :wo * p] = grads.transpose(0, 1, 3, 2).reshape(ho * p, wo * p, C)
    return out


@plausible("max_pool2d_backward", None, "the last window of each axis skipped: range(0, H - p, p), loops",
           tier="loops")
def max_pool2d_backward_off_by_one_loops(x, grad_out, pool_size=2):
    return _loops(x, grad_out, pool_size, last_window=False)


@plausible("max_pool2d_backward", None, "tied maxima share the gradient equally, loops", tier="loops")
def max_pool2d_backward_split_ties_loops(x, grad_out, pool_size=2):
    return _loops(x, grad_out, pool_size, split=True)


@plausible("max_pool2d_backward", None, "the dropped border filled with np.pad(mode='edge')")
def max_pool2d_backward_edge_pad(x, grad_out, pool_size=2):
    x = np.asarray(x, dtype=np.float64)
    p = pool_size
    H, W, C = x.shape
    ho, wo = H // p, W // p
    win = x[:ho * p, :wo * p].reshape(ho, p, wo, p, C).transpose(0, 2, 4, 1, 3).reshape(ho, wo, C, p * p)
    onehot = np.eye(p * p)[win.argmax(axis=-1)] * np.asarray(grad_out, float)[..., None]
    inner = onehot.reshape(ho, wo, C, p, p).transpose(0, 3, 1, 4, 2).reshape(ho * p, wo * p, C)
    return np.pad(inner, ((0, H - ho * p), (0, W - wo * p), (0, 0)), mode="edge")


@plausible("max_pool2d_backward", None, "default pool_size=3")
def max_pool2d_backward_default_three(x, grad_out, pool_size=3):
    return _loops(x, grad_out, pool_size)


@plausible("max_pool2d_backward", "windows overlapping (stride 1)", "window (i, j) read at x[i:i + p, j:j + p], loops",
           tier="loops")
def max_pool2d_backward_stride_one_loops(x, grad_out, pool_size=2):
    x = np.asarray(x, dtype=np.float64)
    p = pool_size
    H, W, C = x.shape
    out = np.zeros_like(x)
    for i in range(H // p):
        for j in range(W // p):
            for c in range(C):
                win = x[i:i + p, j:j + p, c]
                a, b = np.unravel_index(np.argmax(win), win.shape)
                out[i + a, j + b, c] += grad_out[i][j][c]
    return out


@plausible("max_pool2d_backward", None, "mask of equal maxima over the whole image, the pooled max edge-padded")
def max_pool2d_backward_mask_edge(x, grad_out, pool_size=2):
    x = np.asarray(x, dtype=np.float64)
    p = pool_size
    H, W, C = x.shape
    ho, wo = H // p, W // p
    pooled = x[:ho * p, :wo * p].reshape(ho, p, wo, p, C).max(axis=(1, 3))
    pad = ((0, H - ho * p), (0, W - wo * p), (0, 0))
    up_max = np.pad(_upsample(pooled, p), pad, mode="edge")
    up_grad = np.pad(_upsample(np.asarray(grad_out, float), p), pad, mode="edge")
    return (x == up_max) * up_grad
