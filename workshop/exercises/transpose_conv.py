"""Chapter 07: transposed convolution (``conv2d_transpose``), TensorFlow's layouts and sizes.

The wrong implementations below are self-contained numpy (the grader hides
``workshop.reference``), built on one scatter-add with switches for each mistake.
"""

from __future__ import annotations

import numpy as np

from . import register
from .spec import Case, Exercise, Mistake, Output

REF = "workshop.reference.transpose_conv"
SIGNATURE = "conv2d_transpose(x, kernel, strides=1, padding='VALID', output_shape=None)"


# -- a small, switchable scatter-add for the wrong implementations ----------------------------
def _scatter(x, kernel, strides=1, padding="VALID", output_shape=None, *, flip=False,
             same_top_ceil=False, stride_on_kernel=False, extra=0, swap_channels=False,
             valid_stamp_size=False, same_crop_end=False, ignore_output_shape=False,
             trailing_zeros=False):
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    if swap_channels:
        kernel = kernel.transpose(0, 1, 3, 2)
    if flip:
        kernel = kernel[::-1, ::-1]
    batched = x.ndim == 4
    xb = x if batched else x[None]
    _, h, w, c_in = xb.shape
    kh, kw, c_out, k_in = kernel.shape
    if k_in != c_in:
        raise ValueError("channel mismatch")
    sh, sw = (strides, strides) if np.isscalar(strides) else tuple(strides)
    pad = padding.upper()
    # trailing_zeros: s - 1 zeros inserted after the last pixel too, a "full" of H*s + k - 1 rows
    stamp_h = h * sh + kh - 1 if trailing_zeros else (h - 1) * sh + kh
    stamp_w = w * sw + kw - 1 if trailing_zeros else (w - 1) * sw + kw
    if output_shape is None or ignore_output_shape:
        if pad == "VALID" and (valid_stamp_size or trailing_zeros):
            out_h, out_w = stamp_h, stamp_w
        elif pad == "VALID":
            out_h = h * sh + max(kh - sh, 0) + extra * (sh - 1)
            out_w = w * sw + max(kw - sw, 0) + extra * (sw - 1)
        else:
            out_h, out_w = h * sh, w * sw
    else:
        shape = [int(v) for v in output_shape]
        out_h, out_w = shape[-2:] if len(shape) == 2 else shape[-3:-1]

    def crop(stamp, n):
        if pad == "VALID" or same_crop_end:
            return 0
        total = max(stamp - n, 0)
        return -(-total // 2) if same_top_ceil else total // 2

    top, left = crop(stamp_h, out_h), crop(stamp_w, out_w)
    # where tap (a, b) of pixel (i, j) lands
    step_i, step_a = (1, sh) if stride_on_kernel else (sh, 1)
    step_j, step_b = (1, sw) if stride_on_kernel else (sw, 1)
    full_h = (h - 1) * step_i + (kh - 1) * step_a + 1
    full_w = (w - 1) * step_j + (kw - 1) * step_b + 1
    full = np.zeros((xb.shape[0], max(full_h, top + out_h), max(full_w, left + out_w), c_out))
    for a in range(kh):
        for b in range(kw):
            r0, q0 = a * step_a, b * step_b
            full[:, r0:r0 + (h - 1) * step_i + 1:step_i, q0:q0 + (w - 1) * step_j + 1:step_j] += xb @ kernel[a, b].T
    out = full[:, top:top + out_h, left:left + out_w]
    return out if batched else out[0]


def _flipped(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _scatter(x, kernel, strides, padding, output_shape, flip=True)


def _same_wrong_side(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _scatter(x, kernel, strides, padding, output_shape, same_top_ceil=True)


def _stride_on_kernel(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _scatter(x, kernel, strides, padding, output_shape, stride_on_kernel=True)


def _size_off(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _scatter(x, kernel, strides, padding, output_shape, extra=1)


def _swapped_channels(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _scatter(x, kernel, strides, padding, output_shape, swap_channels=True)


def _valid_stamp_size(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _scatter(x, kernel, strides, padding, output_shape, valid_stamp_size=True)


def _same_crop_end(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _scatter(x, kernel, strides, padding, output_shape, same_crop_end=True)


def _ignore_output_shape(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _scatter(x, kernel, strides, padding, output_shape, ignore_output_shape=True)


def _trailing_zeros(x, kernel, strides=1, padding="VALID", output_shape=None):
    return _scatter(x, kernel, strides, padding, output_shape, trailing_zeros=True)


# -- cases ---------------------------------------------------------------------------------------
def _lecture() -> tuple[np.ndarray, np.ndarray]:
    x = np.array([[2.0, 1.0], [4.0, 4.0]])[:, :, None]
    k = np.array([[1.0, 4.0, 1.0], [1.0, 4.0, 3.0], [3.0, 3.0, 1.0]])[:, :, None, None]
    return x, k


def _edge_cases() -> list[Case]:
    rng = np.random.default_rng(7)
    x, k = _lecture()
    lecture_out = np.array([[2, 9, 6, 1], [6, 29, 30, 7], [10, 29, 33, 13], [12, 24, 16, 4]], float)[:, :, None]
    row = np.array([[1.0, 2.0]])[:, :, None]                 # (1, 2, 1)
    taps = np.array([[1.0, 10.0, 100.0]])[:, :, None, None]  # (1, 3, 1, 1)
    x3 = rng.normal(size=(3, 3, 1)).round(2)
    k3 = rng.normal(size=(3, 3, 1, 1)).round(2)
    xb = rng.normal(size=(2, 2, 3, 2)).round(2)
    kb = rng.normal(size=(3, 2, 2, 2)).round(2)
    return [
        Case("lecture example: 2x2 input, 3x3 kernel, stride 1, VALID", (x, k), {"strides": 1, "padding": "VALID"},
             expected=lecture_out, about="Dumoulin & Visin's example from the lecture; the kernel is not flipped"),
        Case("one row, stride (1, 2), VALID", (row, taps), {"strides": (1, 2), "padding": "VALID"},
             expected=np.array([[1.0, 10.0, 102.0, 20.0, 200.0]])[:, :, None],
             about="pixel j lands at column 2*j; the two kernel copies overlap in one column"),
        Case("one row, stride (1, 2), SAME (crop 1 column, at the end)", (row, taps),
             {"strides": (1, 2), "padding": "SAME"},
             expected=np.array([[1.0, 10.0, 102.0, 20.0]])[:, :, None],
             about="SAME: output 2*W; the full 5 columns lose P=1, P//2=0 before and 1 after"),
        Case("3x3 input, 3x3 kernel, stride 2, VALID", (x3, k3), {"strides": 2, "padding": "VALID"}),
        Case("3x3 input, 3x3 kernel, stride 2, SAME", (x3, k3), {"strides": 2, "padding": "SAME"}),
        Case("VALID with the largest output_shape TF accepts", (x3, k3),
             {"strides": 2, "padding": "VALID", "output_shape": (8, 8)},
             about="(H-1)*s + k + s - 1 = 8: one extra row and column, zeros"),
        Case("SAME with the smallest output_shape TF accepts", (x3, k3),
             {"strides": 3, "padding": "SAME", "output_shape": (7, 7)},
             about="(H-1)*s + 1 = 7: P = 2, one row cropped on each side"),
        Case("batch of 2, C_in = C_out = 2, stride (1, 2), SAME", (xb, kb), {"strides": (1, 2), "padding": "SAME"}),
        Case("kernel smaller than the stride (1x1 kernel, stride 3)", (x3, rng.normal(size=(1, 1, 2, 1)).round(2)),
             {"strides": 3, "padding": "VALID"}, about="default VALID size is H*s, not (H-1)*s + k"),
        Case("1x1 input", (np.array([[[1.5]]]), k3), {"strides": 2, "padding": "SAME"}, public=False),
        Case("SAME, output_shape between the extremes", (xb, kb),
             {"strides": 3, "padding": "SAME", "output_shape": (5, 8)}, public=False),
        Case("VALID, full output_shape given", (xb, kb),
             {"strides": 2, "padding": "VALID", "output_shape": (2, 5, 7, 2)},
             about="output_shape may be the full (B, Ho, Wo, C_out) shape: Ho = 5, Wo = 7"),
    ]


def _random_case(rng: np.random.Generator) -> Case:
    batched = rng.random() < 0.5
    h, w = (int(v) for v in rng.integers(1, 5, 2))
    c_in, c_out = (int(v) for v in rng.integers(1, 4, 2))
    kh, kw = (int(v) for v in rng.integers(1, 5, 2))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    padding = str(rng.choice(["VALID", "SAME"]))
    shape = (int(rng.integers(1, 3)), h, w, c_in) if batched else (h, w, c_in)
    x = rng.normal(size=shape)
    kernel = rng.normal(size=(kh, kw, c_out, c_in))
    kwargs: dict = {"strides": sh if sh == sw and rng.random() < 0.5 else (sh, sw), "padding": padding}
    if rng.random() < 0.5:
        if padding == "VALID":
            lo_h, lo_w = (h - 1) * sh + kh, (w - 1) * sw + kw
        else:
            lo_h, lo_w = (h - 1) * sh + 1, (w - 1) * sw + 1
        kwargs["output_shape"] = (int(lo_h + rng.integers(0, sh)), int(lo_w + rng.integers(0, sw)))
    return Case("", (x, kernel), kwargs)


def _benchmarks() -> list[Case]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 64, 64)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 64, 64)).astype(np.float32)
    return [Case("(64, 64, 64) input, 3x3x64 kernel, stride 2, SAME", (x, kernel),
                 {"strides": 2, "padding": "SAME"})]


CONV2D_TRANSPOSE = register(Exercise(
    name="conv2d_transpose",
    chapter="07_transposed_convolution",
    minutes={"loops": 25, "numpy": 25, "tf": 35},
    signature=SIGNATURE,
    summary="Transposed convolution with TensorFlow's layouts, output sizes and SAME cropping.",
    tiers={"loops": f"{REF}:conv2d_transpose_loops", "numpy": f"{REF}:conv2d_transpose_numpy",
           "tf": f"{REF}:conv2d_transpose_tf"},
    kernels={"numpy": "workshop.kernels.transpose_conv:conv2d_transpose_numpy",
             "tf": "workshop.kernels.transpose_conv:conv2d_transpose_tf"},
    edge_cases=_edge_cases,
    random_case=_random_case,
    outputs=(Output("output", "float", rtol=1e-4, atol=1e-4, strict_atol=1e-6),),
    mistakes=(
        Mistake("flipped kernel",
                "Your output is the right one for the kernel flipped upside down and left-right. A transposed "
                "convolution scatters x[i, j] * kernel[a, b] into out[i*s + a, j*s + b] with the kernel as "
                "given; only the conv2d view (zero insertion) needs the flipped kernel.", wrong=_flipped),
        Mistake("SAME crop on the wrong side",
                "With SAME you cropped the odd extra row/column at the top/left. TensorFlow crops "
                "P // 2 before and the rest after, P = (H-1)*s + k - Ho (conv2d's SAME puts the extra "
                "padding at the bottom/right).", wrong=_same_wrong_side),
        Mistake("stride on the kernel",
                "You spread the kernel taps s apart instead of the input pixels: pixel (i, j) must land at "
                "(i*s, j*s) and its taps next to each other, out[i*s + a, j*s + b] (not out[i + a*s, j + b*s]).",
                wrong=_stride_on_kernel),
        Mistake("output s - 1 too large",
                "Your VALID output has s - 1 extra rows/columns: zero insertion puts s - 1 zeros *between* "
                "input pixels, not after the last one. The VALID size is (H-1)*s + k (Keras: H*s + max(k - s, 0)).",
                wrong=_size_off),
        Mistake("kernel channels swapped",
                "You read the kernel as (kh, kw, C_in, C_out); TensorFlow's transposed-convolution kernel is "
                "(kh, kw, C_out, C_in): out[..., o] += x[..., c] * kernel[a, b, o, c].", wrong=_swapped_channels),
        Mistake("VALID size (H-1)*s + k for a small kernel",
                "With VALID and no output_shape the size is Keras' H*s + max(k - s, 0): for a kernel "
                "smaller than the stride that is H*s (the last s - k rows and columns are zeros), "
                "not (H-1)*s + k.", wrong=_valid_stamp_size),
        Mistake("SAME cropped at the end only",
                "With SAME, crop P // 2 rows at the top (columns at the left) and the rest at the "
                "bottom (right), P = (H-1)*s + k - Ho; you cropped them all at the bottom/right.",
                wrong=_same_crop_end),
        Mistake("output_shape ignored",
                "Use output_shape when it is given, as (Ho, Wo) or as the full output shape (then Ho "
                "and Wo are its 3rd and 2nd values from the end); the default size is for "
                "output_shape=None only.", wrong=_ignore_output_shape),
        Mistake("zeros after the last pixel",
                "Your zero insertion also puts s - 1 zeros after the last input pixel, so your full "
                "result has H*s + k - 1 rows where the stamps cover (H-1)*s + k: the VALID default size "
                "and SAME's crop P come out too large. Insert zeros only between the pixels.",
                wrong=_trailing_zeros),
    ),
    tf_static=("strides", "padding", "output_shape"),
    benchmarks=_benchmarks,
    baselines={"tf.nn.conv2d_transpose": f"{REF}:conv2d_transpose_builtin"},
    answer_calls=("tensorflow.nn.conv2d_transpose", "tensorflow.nn.conv_transpose",
                  "tensorflow.raw_ops.Conv2DBackpropInput", "keras.layers.Conv2DTranspose",
                  "keras.ops.conv_transpose", "torch.nn.functional.conv_transpose2d"),
    no_loops_over=("x",),   # the numpy tier: one slice-add per kernel tap, no loop over pixels
))


# -- the FCN's bilinear initialisation ----------------------------------------------------------
# Each wrong implementation is the right recipe with one step changed.
def _bilinear(factor, channels, *, size=None, centre=None, scale=None, every_pair=False,
              sum_to_one=False, channels_first=False):
    size = 2 * factor - factor % 2 if size is None else size
    centre = (size - 1) / 2 if centre is None else centre
    scale = factor if scale is None else scale
    tent = 1 - np.abs(np.arange(size) - centre) / scale
    plane = np.outer(tent, tent)
    if sum_to_one:
        plane = plane / plane.sum()
    mix = np.ones((channels, channels)) if every_pair else np.eye(channels)
    kernel = np.multiply.outer(plane, mix)
    return kernel.transpose(2, 3, 0, 1) if channels_first else kernel


def _centre_at_half_size(factor, channels):
    size = 2 * factor - factor % 2
    return _bilinear(factor, channels, centre=size / 2)


def _even_size_for_odd_factor(factor, channels):
    return _bilinear(factor, channels, size=2 * factor)


def _every_channel_pair(factor, channels):
    return _bilinear(factor, channels, every_pair=True)


def _sums_to_one(factor, channels):
    return _bilinear(factor, channels, sum_to_one=True)


def _divided_by_size(factor, channels):
    return _bilinear(factor, channels, scale=2 * factor - factor % 2)


def _channels_first(factor, channels):
    return _bilinear(factor, channels, channels_first=True)


def _bilinear_cases() -> list[Case]:
    four = np.array([1.0, 3.0, 3.0, 1.0]) / 4
    five = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 3
    return [
        Case("factor 2, one channel: the 4x4 kernel", (2, 1),
             expected=np.outer(four, four)[:, :, None, None],
             about="k = 4, centre 1.5: the tent [1, 3, 3, 1] / 4 on each axis"),
        Case("factor 3, one channel: the 5x5 kernel (odd size)", (3, 1),
             expected=np.outer(five, five)[:, :, None, None],
             about="k = 2*3 - 1 = 5, centre 2: the tent [1, 2, 3, 2, 1] / 3 on each axis"),
        Case("factor 2, three channels: each channel upsampled on its own", (2, 3),
             about="kernel[:, :, o, c] is the 4x4 kernel when o == c, zeros otherwise"),
        Case("factor 1: a 1x1 identity", (1, 2), expected=np.eye(2)[None, None],
             about="k = 1, centre 0: upsampling by 1 copies every channel"),
        Case("factor 4, two channels", (4, 2), public=False),
        Case("factor 5, one channel", (5, 1), public=False),
        Case("factor 8 (a stride-8 backbone), two channels", (8, 2), public=False),
    ]


def _bilinear_random(rng: np.random.Generator) -> Case:
    return Case("", (int(rng.integers(1, 9)), int(rng.integers(1, 5))))


BILINEAR_KERNEL = register(Exercise(
    name="bilinear_kernel",
    chapter="07_transposed_convolution",
    minutes={"loops": 15, "numpy": 10},
    signature="bilinear_kernel(factor, channels) -> (k, k, channels, channels) float64",
    summary="The FCN's bilinear initialisation of a Conv2DTranspose that upsamples by factor.",
    tiers={"loops": f"{REF}:bilinear_kernel_loops", "numpy": f"{REF}:bilinear_kernel_numpy"},
    edge_cases=_bilinear_cases,
    random_case=_bilinear_random,
    outputs=(Output("kernel", "float", rtol=1e-5, atol=1e-6, strict_atol=1e-12),),
    mistakes=(
        Mistake("centre at k / 2",
                "Your kernel is centred half a pixel too far: the centre of k taps numbered 0..k-1 "
                "is c = (k - 1) / 2 (factor - 1 for an odd k, factor - 0.5 for an even k), not k / 2. "
                "The kernel must be symmetric: kernel[i] == kernel[k - 1 - i].",
                wrong=_centre_at_half_size),
        Mistake("kernel size 2 * factor for an odd factor",
                "For an odd factor the kernel has k = 2*factor - 1 taps (5 for factor 3), not "
                "2*factor: k = 2*factor - factor % 2, so that an odd kernel has a centre tap of "
                "weight 1 that copies the input pixel.", wrong=_even_size_for_odd_factor),
        Mistake("every channel pair",
                "You put the bilinear kernel on every (output, input) channel pair, which sums all "
                "the input channels into each output channel. Upsampling keeps the channels apart: "
                "kernel[:, :, o, c] is the bilinear kernel when o == c and zeros otherwise.",
                wrong=_every_channel_pair),
        Mistake("normalised to sum 1",
                "You divided the kernel by its sum, so the upsampled map comes out factor**2 times too "
                "small. The weights that sum to 1 are those reaching one *output* pixel (one tap "
                "in every factor along each axis); the whole kernel feeds factor**2 output pixels "
                "and sums to factor**2. Keep (1 - |i - c| / factor) * (1 - |j - c| / factor).",
                wrong=_sums_to_one),
        Mistake("distance divided by the kernel size",
                "Your weights fall off too slowly: the tent is 1 - |i - c| / factor (it reaches 0 "
                "one stride away from the centre), not 1 - |i - c| / k.", wrong=_divided_by_size),
        Mistake("channels first",
                "Your kernel is in PyTorch's (C, C, k, k) layout; Keras' Conv2DTranspose and "
                "tf.nn.conv2d_transpose take (kh, kw, C_out, C_in): the channel axes last.",
                wrong=_channels_first),
    ),
    no_loops_over=("channels",),
))
