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


# == bilinear_kernel ===============================================================================
def _bilinear_loops(factor, channels, *, size=None, centre=None, every_pair=False):
    """A learner's tap-by-tap kernel."""
    k = 2 * factor - factor % 2 if size is None else size
    c = (k - 1) / 2 if centre is None else centre
    kernel = np.zeros((k, k, channels, channels))
    for i in range(k):
        for j in range(k):
            w = (1 - abs(i - c) / factor) * (1 - abs(j - c) / factor)
            for o in range(channels):
                for q in range(channels):
                    if every_pair or o == q:
                        kernel[i, j, o, q] = w
    return kernel


def _upsample_filt(size):
    """The FCN repository's upsample_filt: the 2-D tent of a size x size kernel."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


@plausible("bilinear_kernel", "centre at k / 2", "centre = k / 2, loops", tier="loops")
def bilinear_kernel_centre_half_loops(factor, channels):
    k = 2 * factor - factor % 2
    return _bilinear_loops(factor, channels, centre=k / 2)


@plausible("bilinear_kernel", "every channel pair", "the weight on every (o, c), loops", tier="loops")
def bilinear_kernel_every_pair_loops(factor, channels):
    return _bilinear_loops(factor, channels, every_pair=True)


@plausible("bilinear_kernel", "kernel size 2 * factor for an odd factor", "the FCN's upsample_filt(2 * factor)")
def bilinear_kernel_fcn_size(factor, channels):
    filt = _upsample_filt(2 * factor)
    kernel = np.zeros((2 * factor, 2 * factor, channels, channels))
    kernel[:, :, range(channels), range(channels)] = filt[:, :, None]
    return kernel


@plausible("bilinear_kernel", "normalised to sum 1", "the tent outer product divided by its sum, float32")
def bilinear_kernel_sum_one(factor, channels):
    k = 2 * factor - factor % 2
    tent = 1 - np.abs(np.arange(k, dtype=np.float32) - (k - 1) / 2) / factor
    plane = np.outer(tent, tent)
    plane /= plane.sum()
    return np.einsum("ij,oc->ijoc", plane, np.eye(channels, dtype=np.float32))


@plausible("bilinear_kernel", "channels first", "np.einsum('ij,oc->ocij'), PyTorch's layout")
def bilinear_kernel_channels_first(factor, channels):
    k = 2 * factor - factor % 2
    tent = 1 - np.abs(np.arange(k) - (k - 1) / 2) / factor
    return np.einsum("ij,oc->ocij", np.outer(tent, tent), np.eye(channels))


@plausible("bilinear_kernel", None, "centre at factor for every k, loops", tier="loops")
def bilinear_kernel_centre_factor_loops(factor, channels):
    return _bilinear_loops(factor, channels, centre=factor)


@plausible("bilinear_kernel", None, "one channel only: (k, k, 1, 1) whatever channels")
def bilinear_kernel_one_channel(factor, channels):
    k = 2 * factor - factor % 2
    tent = 1 - np.abs(np.arange(k) - (k - 1) / 2) / factor
    return np.outer(tent, tent)[:, :, None, None]


@plausible("bilinear_kernel", None, "centre at k / 2 and normalised to sum 1")
def bilinear_kernel_centre_half_sum_one(factor, channels):
    k = 2 * factor - factor % 2
    tent = 1 - np.abs(np.arange(k) - k / 2) / factor
    plane = np.outer(tent, tent)
    return np.multiply.outer(plane / plane.sum(), np.eye(channels))


@plausible("bilinear_kernel", "distance divided by the kernel size", "1 - |i - c| / k, loops", tier="loops")
def bilinear_kernel_by_size_loops(factor, channels):
    k = 2 * factor - factor % 2
    c = (k - 1) / 2
    kernel = np.zeros((k, k, channels, channels))
    for i in range(k):
        for j in range(k):
            for o in range(channels):
                kernel[i, j, o, o] = (1 - abs(i - c) / k) * (1 - abs(j - c) / k)
    return kernel


@plausible("bilinear_kernel", None, "tent 1 - |np.linspace(-1, 1, k)|")
def bilinear_kernel_linspace(factor, channels):
    k = 2 * factor - factor % 2
    tent = 1 - np.abs(np.linspace(-1, 1, k))
    return np.multiply.outer(np.outer(tent, tent), np.eye(channels))


@plausible("bilinear_kernel", None, "k = 2 * factor - 1 for every factor, loops", tier="loops")
def bilinear_kernel_always_odd_loops(factor, channels):
    return _bilinear_loops(factor, channels, size=2 * factor - 1)
