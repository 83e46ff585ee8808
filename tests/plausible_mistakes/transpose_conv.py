"""Chapter 07 (conv2d_transpose): plausible learner mistakes."""

import numpy as np

from . import plausible


def _setup(x, kernel, strides, output_shape):
    x = np.asarray(x, dtype=np.float64)
    batched = x.ndim == 4
    xb = x if batched else x[None]
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    given = None
    if output_shape is not None:
        given = tuple(output_shape)[-2:] if len(output_shape) == 2 else tuple(output_shape)[-3:-1]
    return xb, np.asarray(kernel, dtype=np.float64), batched, sh, sw, given


def _loops(x, kernel, strides=1, padding="VALID", output_shape=None, *, valid_size="keras",
           same_top="half", swap_strides=False, symmetric=False, first_two=False):
    """A learner's scatter-add with loops, sizes from formulas."""
    xb, k, batched, sh, sw, given = _setup(x, kernel, strides, output_shape)
    if swap_strides:
        sh, sw = sw, sh
    if first_two and output_shape is not None:
        given = (output_shape[0], output_shape[1])
    B, H, W, Cin = xb.shape
    kh, kw, Cout, _ = k.shape
    full_h, full_w = (H - 1) * sh + kh, (W - 1) * sw + kw
    if given is not None:
        Ho, Wo = given
    elif padding.upper() == "SAME":
        Ho, Wo = H * sh, W * sw
    elif valid_size == "stamp":
        Ho, Wo = full_h, full_w
    else:
        Ho, Wo = H * sh + max(kh - sh, 0), W * sw + max(kw - sw, 0)
    top = left = 0
    if padding.upper() == "SAME" and same_top == "half":
        top, left = max(full_h - Ho, 0) // 2, max(full_w - Wo, 0) // 2
    if symmetric and padding.upper() == "SAME":
        Ho, Wo = full_h - 2 * top, full_w - 2 * left
    out = np.zeros((B, Ho, Wo, Cout))
    for n in range(B):
        for i in range(H):
            for j in range(W):
                for a in range(kh):
                    for b in range(kw):
                        r, q = i * sh + a - top, j * sw + b - left
                        if 0 <= r < Ho and 0 <= q < Wo:
                            for o in range(Cout):
                                for c in range(Cin):
                                    out[n, r, q, o] += xb[n, i, j, c] * k[a, b, o, c]
    return out if batched else out[0]


@plausible("conv2d_transpose", "VALID size (H-1)*s + k for a small kernel",
           "VALID default (H-1)*s + k, loops", tier="loops")
def conv2d_transpose_stamp_size_loops(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _loops(x, kernel, strides, padding, output_shape, valid_size="stamp")


@plausible("conv2d_transpose", "SAME cropped at the end only", "SAME window from row 0, loops",
           tier="loops")
def conv2d_transpose_same_from_top_loops(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _loops(x, kernel, strides, padding, output_shape, same_top="zero")


@plausible("conv2d_transpose", None, "strides pair read as (sw, sh), loops", tier="loops")
def conv2d_transpose_strides_swapped_loops(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _loops(x, kernel, strides, padding, output_shape, swap_strides=True)


@plausible("conv2d_transpose", None, "SAME crops P // 2 on both sides, loops", tier="loops")
def conv2d_transpose_symmetric_crop_loops(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _loops(x, kernel, strides, padding, output_shape, symmetric=True)


@plausible("conv2d_transpose", None, "output_shape[0], output_shape[1] always, loops", tier="loops")
def conv2d_transpose_first_two_loops(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _loops(x, kernel, strides, padding, output_shape, first_two=True)


def _numpy(x, kernel, strides=1, padding="VALID", output_shape=None, *, flip=False,
           use_output_shape=True, einsum="nhwc,oc->nhwo"):
    """A learner's slice-add per kernel tap."""
    xb, k, batched, sh, sw, given = _setup(x, kernel, strides, output_shape)
    if flip:
        k = k[::-1, ::-1]
    B, H, W, _ = xb.shape
    kh, kw, Cout, _ = k.shape
    full_h, full_w = (H - 1) * sh + kh, (W - 1) * sw + kw
    if given is not None and use_output_shape:
        Ho, Wo = given
    elif padding.upper() == "SAME":
        Ho, Wo = H * sh, W * sw
    else:
        Ho, Wo = H * sh + max(kh - sh, 0), W * sw + max(kw - sw, 0)
    full = np.zeros((B, max(full_h, Ho + full_h), max(full_w, Wo + full_w), Cout))
    for a in range(kh):
        for b in range(kw):
            full[:, a:a + (H - 1) * sh + 1:sh, b:b + (W - 1) * sw + 1:sw] += np.einsum(einsum, xb, k[a, b])
    top = left = 0
    if padding.upper() == "SAME":
        top, left = max(full_h - Ho, 0) // 2, max(full_w - Wo, 0) // 2
    out = full[:, top:top + Ho, left:left + Wo]
    return out if batched else out[0]


@plausible("conv2d_transpose", "flipped kernel", "kernel[::-1, ::-1] in the scatter")
def conv2d_transpose_flipped(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _numpy(x, kernel, strides, padding, output_shape, flip=True)


@plausible("conv2d_transpose", "output_shape ignored", "always the default size")
def conv2d_transpose_default_size(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _numpy(x, kernel, strides, padding, output_shape, use_output_shape=False)


@plausible("conv2d_transpose", "kernel channels swapped", "einsum with kernel[a, b] as (C_in, C_out)")
def conv2d_transpose_channels(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _numpy(x, kernel, strides, padding, output_shape, einsum="nhwc,co->nhwo")


@plausible("conv2d_transpose", "zeros after the last pixel",
           "zero insertion to H*s, then a correlation with the flipped kernel")
def conv2d_transpose_zero_insertion(x, kernel, strides=1, padding="VALID", output_shape=None):
    xb, k, batched, sh, sw, given = _setup(x, kernel, strides, output_shape)
    B, H, W, Cin = xb.shape
    kh, kw, Cout, _ = k.shape
    up = np.zeros((B, H * sh, W * sw, Cin))
    up[:, ::sh, ::sw] = xb                                 # s - 1 zeros after every pixel
    padded = np.pad(up, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    flipped = k[::-1, ::-1]
    fh, fw = padded.shape[1] - kh + 1, padded.shape[2] - kw + 1
    full = np.zeros((B, fh, fw, Cout))
    for a in range(kh):
        for b in range(kw):
            full += padded[:, a:a + fh, b:b + fw] @ flipped[a, b].T
    if given is not None:
        Ho, Wo = given
    elif padding.upper() == "SAME":
        Ho, Wo = H * sh, W * sw
    else:
        Ho, Wo = fh, fw
    top = left = 0
    if padding.upper() == "SAME":
        top, left = max(fh - Ho, 0) // 2, max(fw - Wo, 0) // 2
    full = np.pad(full, ((0, 0), (0, max(top + Ho - fh, 0)), (0, max(left + Wo - fw, 0)), (0, 0)))
    out = full[:, top:top + Ho, left:left + Wo]
    return out if batched else out[0]
