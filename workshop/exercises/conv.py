"""Chapter 01: a convolution and a max pooling by hand (``conv2d``, ``max_pool2d``), with
TensorFlow's layouts (``x`` ``(H, W, C_in)``, ``kernel`` ``(kh, kw, C_in, C_out)``), output sizes
and SAME padding split; and the max pooling's backward pass (``max_pool2d_backward``): the
upstream gradient routed to each window's first maximum, TensorFlow's rule.

The wrong implementations below are self-contained numpy (the grader hides
``workshop.reference``): one small cross-correlation, one small pooling and one small pooling
gradient, with a switch per mistake.

Length: one chapter's registry in one place: each exercise's cases, benchmarks and every
declared mistake with its self-contained wrong implementation, read together when an exercise
changes.
"""

from __future__ import annotations

import numpy as np

from . import register
from .spec import Case, Exercise, Mistake, Output

REF = "workshop.reference.conv"
CHAPTER = "01_cnn_basics"


# ============================================================================================
# wrong implementations (self-contained)
# ============================================================================================
def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else tuple(int(s) for s in v)


def _wrong_conv(x, kernel, stride=1, padding="VALID", *, flip=False, kernel_hw_swapped=False,
                same_top_ceil=False, ignore_stride=False, channels_swapped=False):
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    if flip:
        kernel = kernel[::-1, ::-1]
    if kernel_hw_swapped:
        kernel = kernel.transpose(1, 0, 2, 3)
    if channels_swapped:
        kernel = kernel.transpose(0, 1, 3, 2)
    sh, sw = (1, 1) if ignore_stride else _pair(stride)
    h, w, c_in = x.shape
    kh, kw, k_in, c_out = kernel.shape
    if k_in != c_in:
        raise ValueError("channel mismatch")
    pads = []
    for size, k, s in ((h, kh, sh), (w, kw, sw)):
        if padding.upper() == "VALID":
            pads.append((0, 0))
        else:
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            before = -(-total // 2) if same_top_ceil else total // 2
            pads.append((before, total - before))
    xp = np.pad(x, (pads[0], pads[1], (0, 0)))
    ho, wo = (xp.shape[0] - kh) // sh + 1, (xp.shape[1] - kw) // sw + 1
    out = np.zeros((ho, wo, c_out))
    for a in range(kh):
        for b in range(kw):
            patch = xp[a:a + (ho - 1) * sh + 1:sh, b:b + (wo - 1) * sw + 1:sw]
            out += patch @ kernel[a, b]
    return out


def _conv_flipped(x, kernel, stride=1, padding="VALID"):
    return _wrong_conv(x, kernel, stride, padding, flip=True)


def _conv_kernel_hw_swapped(x, kernel, stride=1, padding="VALID"):
    return _wrong_conv(x, kernel, stride, padding, kernel_hw_swapped=True)


def _conv_same_wrong_side(x, kernel, stride=1, padding="VALID"):
    return _wrong_conv(x, kernel, stride, padding, same_top_ceil=True)


def _conv_stride_ignored(x, kernel, stride=1, padding="VALID"):
    return _wrong_conv(x, kernel, stride, padding, ignore_stride=True)


def _conv_channels_swapped(x, kernel, stride=1, padding="VALID"):
    return _wrong_conv(x, kernel, stride, padding, channels_swapped=True)


def _wrong_pool(x, pool_size=2, *, average=False, stride_one=False, keep_partial=False,
                reshape_wrong=False, start_at_zero=False):
    x = np.asarray(x, np.float64)
    p = int(pool_size)
    h, w, c = x.shape
    if reshape_wrong:
        ho, wo = h // p, w // p
        return x[:ho * p, :wo * p].reshape(ho, wo, p, p, c).max(axis=(2, 3))
    step = 1 if stride_one else p
    if keep_partial:
        ho, wo = -(-h // p), -(-w // p)
    else:
        ho, wo = (h - p) // step + 1, (w - p) // step + 1
    out = np.zeros((ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            win = x[i * step:i * step + p, j * step:j * step + p]
            v = win.mean(axis=(0, 1)) if average else win.max(axis=(0, 1))
            out[i, j] = np.maximum(v, 0.0) if start_at_zero else v
    return out


def _pool_average(x, pool_size=2):
    return _wrong_pool(x, pool_size, average=True)


def _pool_stride_one(x, pool_size=2):
    return _wrong_pool(x, pool_size, stride_one=True)


def _pool_keep_partial(x, pool_size=2):
    return _wrong_pool(x, pool_size, keep_partial=True)


def _pool_reshape_wrong(x, pool_size=2):
    return _wrong_pool(x, pool_size, reshape_wrong=True)


def _pool_start_at_zero(x, pool_size=2):
    return _wrong_pool(x, pool_size, start_at_zero=True)


def _wrong_pool_backward(x, grad_out, pool_size=2, *, route="first", stride_one=False,
                         reshape_wrong=False, border_edge=False, ignore_grad=False):
    """Max pooling's gradient with one switch per mistake. route: "first" (right), "last" (the
    last of equal maxima), "column" (the first column by column), "ties" (every equal maximum),
    "window" (every element), "average" (grad / p**2 to every element)."""
    x, g = np.asarray(x, np.float64), np.asarray(grad_out, np.float64)
    if ignore_grad:
        g = np.ones_like(g)
    p = int(pool_size)
    h, w, c = x.shape
    ho, wo = h // p, w // p
    grad = np.zeros_like(x)
    if reshape_wrong:
        win = x[:ho * p, :wo * p].reshape(ho, wo, p * p, c)
        hot = (np.arange(p * p)[:, None] == win.argmax(axis=2)[:, :, None, :]) * g[:, :, None, :]
        grad[:ho * p, :wo * p] = hot.reshape(ho * p, wo * p, c)
        return grad
    step = 1 if stride_one else p
    for i in range(ho):
        for j in range(wo):
            for k in range(c):
                win = x[i * step:i * step + p, j * step:j * step + p, k]
                hot = np.zeros((p, p))
                if route == "window":
                    hot[:] = 1.0
                elif route == "average":
                    hot[:] = 1.0 / (p * p)
                elif route == "ties":
                    hot = (win == win.max()).astype(np.float64)
                elif route == "column":
                    b, a = divmod(int(win.T.argmax()), p)
                    hot[a, b] = 1.0
                elif route == "last":
                    a, b = divmod(p * p - 1 - int(win.ravel()[::-1].argmax()), p)
                    hot[a, b] = 1.0
                else:
                    a, b = divmod(int(win.argmax()), p)
                    hot[a, b] = 1.0
                grad[i * step:i * step + p, j * step:j * step + p, k] += hot * g[i, j, k]
    if border_edge and (h > ho * p or w > wo * p):
        # the dropped rows/columns routed like their nearest window: gradient where they equal its max
        peak = x[:ho * p, :wo * p].reshape(ho, p, wo, p, c).max(axis=(1, 3))
        rows, cols = np.minimum(np.arange(h) // p, ho - 1), np.minimum(np.arange(w) // p, wo - 1)
        near_max, near_g = peak[rows][:, cols], g[rows][:, cols]
        outside = np.ones((h, w), bool)
        outside[:ho * p, :wo * p] = False
        grad += np.where(outside[:, :, None] & (x == near_max), near_g, 0.0)
    return grad


def _pool_back_every_element(x, grad_out, pool_size=2):
    return _wrong_pool_backward(x, grad_out, pool_size, route="window")


def _pool_back_average(x, grad_out, pool_size=2):
    return _wrong_pool_backward(x, grad_out, pool_size, route="average")


def _pool_back_every_tie(x, grad_out, pool_size=2):
    return _wrong_pool_backward(x, grad_out, pool_size, route="ties")


def _pool_back_last_tie(x, grad_out, pool_size=2):
    return _wrong_pool_backward(x, grad_out, pool_size, route="last")


def _pool_back_column_first(x, grad_out, pool_size=2):
    return _wrong_pool_backward(x, grad_out, pool_size, route="column")


def _pool_back_border(x, grad_out, pool_size=2):
    return _wrong_pool_backward(x, grad_out, pool_size, border_edge=True)


def _pool_back_stride_one(x, grad_out, pool_size=2):
    return _wrong_pool_backward(x, grad_out, pool_size, stride_one=True)


def _pool_back_reshape_wrong(x, grad_out, pool_size=2):
    return _wrong_pool_backward(x, grad_out, pool_size, reshape_wrong=True)


def _pool_back_mask_only(x, grad_out, pool_size=2):
    return _wrong_pool_backward(x, grad_out, pool_size, ignore_grad=True)


# ============================================================================================
# cases
# ============================================================================================
def _img(rows) -> np.ndarray:
    """A one-channel image ``(H, W, 1)`` from a list of rows."""
    return np.array(rows, dtype=np.float64)[:, :, None]


def _k(rows) -> np.ndarray:
    """A one-in, one-out kernel ``(kh, kw, 1, 1)`` from a list of rows."""
    return np.array(rows, dtype=np.float64)[:, :, None, None]


def _conv_edge_cases() -> list[Case]:
    rng = np.random.default_rng(11)
    x9 = _img(np.arange(9).reshape(3, 3))
    mix = np.array([[[1.0, 2.0], [3.0, 4.0]]])              # (1, 2, 2): two pixels, two channels
    mix_k = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])    # (1, 1, 2, 2): kernel[0, 0, c, o]
    return [
        Case("pinned: a horizontal-gradient (edge) detector", (_img([[0, 0, 9, 9], [1, 1, 5, 5]]), _k([[-1, 1]])),
             {"stride": 1, "padding": "VALID"}, expected=_img([[0, 9, 0], [0, 4, 0]]),
             about="out[i, j] = x[i, j + 1] - x[i, j]: the kernel is not flipped"),
        Case("pinned: 3x3 image, asymmetric 2x2 kernel", (x9, _k([[1, 2], [3, 4]])),
             {"stride": 1, "padding": "VALID"}, expected=_img([[27, 37], [57, 67]]),
             about="out[0, 0] = 0*1 + 1*2 + 3*3 + 4*4 = 27"),
        Case("pinned: SAME with an even kernel pads at the bottom/right", (x9, _k([[1, 1], [1, 1]])),
             {"stride": 1, "padding": "SAME"}, expected=_img([[8, 12, 7], [20, 24, 13], [13, 15, 8]]),
             about="P = 1 row and 1 column of zeros: P // 2 = 0 before, 1 after"),
        Case("pinned: stride 2 keeps every other pixel", (_img(np.arange(16).reshape(4, 4)), _k([[2]])),
             {"stride": 2, "padding": "VALID"}, expected=_img([[0, 4], [16, 20]])),
        Case("pinned: a 1x1 kernel mixes channels", (mix, mix_k), {"stride": 1, "padding": "VALID"},
             expected=np.array([[[201.0, 2010.0], [403.0, 4030.0]]]),
             about="out[..., o] = sum_c x[..., c] * kernel[0, 0, c, o]"),
        Case("non-square image and kernel", (rng.normal(size=(4, 6, 1)).round(2), rng.normal(size=(2, 3, 1, 1)).round(2)),
             {"stride": 1, "padding": "VALID"}, about="rows and columns play different roles"),
        Case("SAME, stride 2, odd size, 2 -> 3 channels", (rng.normal(size=(5, 5, 2)).round(2),
                                                           rng.normal(size=(3, 3, 2, 3)).round(2)),
             {"stride": 2, "padding": "SAME"}, about="Ho = ceil(5 / 2) = 3, P = 2: one row each side"),
        Case("SAME, stride (1, 2), even kernel", (rng.normal(size=(4, 6, 2)).round(2),
                                                 rng.normal(size=(2, 4, 2, 2)).round(2)),
             {"stride": (1, 2), "padding": "SAME"}, about="P_h = 1 (0 before), P_w = 2 (1 before)"),
        Case("kernel as large as the image", (rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2, 2))),
             {"stride": 1, "padding": "VALID"}, public=False),
        Case("SAME, stride larger than the kernel", (rng.normal(size=(7, 4, 1)), rng.normal(size=(2, 2, 1, 2))),
             {"stride": 3, "padding": "SAME"}, public=False, about="P may be 0 or negative: clamp it at 0"),
        Case("1x1 image, SAME 3x3 kernel", (np.array([[[2.0, -1.0]]]), rng.normal(size=(3, 3, 2, 1))),
             {"stride": 1, "padding": "SAME"}, public=False),
        Case("VALID, stride that does not divide", (rng.normal(size=(6, 7, 3)), rng.normal(size=(3, 2, 3, 2))),
             {"stride": (2, 3), "padding": "VALID"}, public=False),
    ]


def _conv_random(rng) -> Case:
    h, w = (int(v) for v in rng.integers(1, 9, 2))
    c_in, c_out = (int(v) for v in rng.integers(1, 4, 2))
    padding = str(rng.choice(["VALID", "SAME"]))
    hi_h, hi_w = (h, w) if padding == "VALID" else (4, 4)
    kh, kw = int(rng.integers(1, min(hi_h, 4) + 1)), int(rng.integers(1, min(hi_w, 4) + 1))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    stride = sh if rng.random() < 0.5 else (sh, sw)
    return Case("", (rng.normal(size=(h, w, c_in)), rng.normal(size=(kh, kw, c_in, c_out))),
                {"stride": stride, "padding": padding})


def _conv_benchmarks() -> list[Case]:
    rng = np.random.default_rng(0)
    return [Case("(32, 32, 16) image, 3x3x16x32 kernel, SAME",
                 (rng.normal(size=(32, 32, 16)), rng.normal(size=(3, 3, 16, 32))),
                 {"stride": 1, "padding": "SAME"})]


def _pool_edge_cases() -> list[Case]:
    rng = np.random.default_rng(12)
    x4 = _img([[1, 2, 5, 6], [3, 4, 7, 8], [9, 10, 13, 14], [11, 12, 15, 16]])
    two = np.stack([np.arange(16.0).reshape(4, 4), -np.arange(16.0).reshape(4, 4)], axis=-1)
    return [
        Case("pinned: 4x4, one channel", (x4,), expected=_img([[4, 8], [12, 16]])),
        Case("pinned: odd size drops the last row and column", (_img(np.arange(25).reshape(5, 5)),),
             expected=_img([[6, 8], [16, 18]]), about="VALID: (5 // 2) = 2 windows per axis"),
        Case("pinned: two channels, one all negative", (two,),
             expected=np.stack([[[5.0, 7.0], [13.0, 15.0]], [[0.0, -2.0], [-8.0, -10.0]]], axis=-1),
             about="each channel is pooled on its own; a maximum can be negative"),
        Case("3x3 windows on a 7x6 image", (rng.normal(size=(7, 6, 2)).round(2), 3)),
        Case("pool_size 1 is the identity", (rng.normal(size=(3, 2, 2)), 1), public=False),
        Case("window as large as the image", (rng.normal(size=(3, 3, 3)), 3), public=False),
        Case("2x3 image", (rng.normal(size=(2, 3, 1)),), public=False),
    ]


def _pool_random(rng) -> Case:
    p = int(rng.choice([2, 2, 3]))
    h, w = (int(v) for v in rng.integers(p, 10, 2))
    c = int(rng.integers(1, 4))
    x = rng.normal(size=(h, w, c))
    return Case("", (x,) if p == 2 and rng.random() < 0.5 else (x, p))


def _pool_benchmarks() -> list[Case]:
    rng = np.random.default_rng(0)
    return [Case("(64, 64, 32) feature map", (rng.normal(size=(64, 64, 32)),))]


def _pool_backward_edge_cases() -> list[Case]:
    rng = np.random.default_rng(13)
    relu = np.maximum(rng.normal(size=(4, 6, 2)).round(1), 0.0)   # a ReLU's output: flat zeros
    relu[0, :2, 0] = 0.0                                            # at least one all-zero window
    relu[:2, :2, 0] = 0.0
    distinct = rng.permutation(84).reshape(6, 7, 2) / 10.0          # no two values equal
    return [
        Case("pinned: 4x4, the maxima in four different places",
             (_img([[1, 9, 2, 0], [3, 4, 8, 1], [7, 0, 5, 6], [2, 1, 3, 4]]), _img([[10, 20], [30, 40]])),
             expected=_img([[0, 10, 0, 0], [0, 0, 20, 0], [30, 0, 0, 40], [0, 0, 0, 0]]),
             about="window (0, 0) = [[1, 9], [3, 4]]: its max 9 is at (0, 1), so grad_x[0, 1] = 10"),
        Case("pinned: ties go to the first maximum, row by row",
             (_img([[5, 5, 1, 7], [5, 5, 7, 7]]), _img([[3, 5]])),
             expected=_img([[3, 0, 0, 5], [0, 0, 0, 0]]),
             about="the first of equal maxima reading the window row by row, as TensorFlow's gradient"),
        Case("pinned: odd size: the dropped row and column get 0",
             (_img([[1, 2, 9], [4, 3, 9], [4, 0, 9]]), _img([[6]])),
             expected=_img([[0, 0, 0], [6, 0, 0], [0, 0, 0]]),
             about="only the 2x2 window at the top-left is pooled: the 9s and the second 4 were never in it"),
        Case("3x3 windows on a 6x7 image, two channels", (distinct, rng.normal(size=(2, 2, 2)).round(2), 3)),
        Case("a ReLU's output: windows of equal zeros", (relu, rng.normal(size=(2, 3, 2)).round(2)),
             about="an all-zero window sends its gradient to its top-left element"),
        Case("pool_size 1: the gradient passes through", (rng.normal(size=(3, 2, 2)),
                                                          rng.normal(size=(3, 2, 2)), 1), public=False),
        Case("window as large as the image", (rng.normal(size=(3, 3, 3)), rng.normal(size=(1, 1, 3)), 3),
             public=False),
        Case("2x3 image: the last column is dropped", (rng.normal(size=(2, 3, 1)), rng.normal(size=(1, 1, 1))),
             public=False),
        Case("small integers: ties everywhere", (rng.integers(0, 3, size=(7, 8, 2)).astype(np.float64),
                                                 rng.normal(size=(2, 2, 2)), 3), public=False),
        Case("ties reaching into the dropped border", (np.ones((5, 5, 2)), rng.normal(size=(2, 2, 2))),
             public=False, about="every value equal: the top-left of each window, nothing in row 4 / column 4"),
    ]


def _pool_backward_random(rng) -> Case:
    p = int(rng.choice([2, 2, 3]))
    h, w = (int(v) for v in rng.integers(p, 10, 2))
    c = int(rng.integers(1, 4))
    x = rng.normal(size=(h, w, c))                                  # continuous: no ties
    grad_out = rng.normal(size=(h // p, w // p, c))
    return Case("", (x, grad_out) if p == 2 and rng.random() < 0.5 else (x, grad_out, p))


def _pool_backward_benchmarks() -> list[Case]:
    rng = np.random.default_rng(0)
    return [Case("(64, 64, 32) feature map", (rng.normal(size=(64, 64, 32)), rng.normal(size=(32, 32, 32))))]


# ============================================================================================
# declarations
# ============================================================================================
register(Exercise(
    name="conv2d",
    chapter=CHAPTER,
    minutes={"loops": 25, "numpy": 25, "tf": 10},
    signature="conv2d(x, kernel, stride=1, padding='VALID') -> (Ho, Wo, C_out) float",
    summary="2-D convolution (cross-correlation) with tf.nn.conv2d's layouts, sizes and SAME padding.",
    tiers={"loops": f"{REF}:conv2d_loops", "numpy": f"{REF}:conv2d_numpy", "tf": f"{REF}:conv2d_tf"},
    edge_cases=_conv_edge_cases,
    random_case=_conv_random,
    outputs=(Output("output", "float", rtol=1e-4, atol=1e-4, strict_atol=1e-6),),
    mistakes=(
        Mistake("kernel flipped (true convolution)",
                "Your output is the one for the kernel flipped upside down and left-right: that is the "
                "convolution of the maths books. Deep-learning 'convolutions' are cross-correlations: "
                "out[i, j] = sum x[i*s + a, j*s + b] * kernel[a, b], with the kernel as given.",
                _conv_flipped),
        Mistake("kernel rows and columns swapped",
                "You read the kernel as (kw, kh, ...): kernel[a, b] multiplies the pixel a rows down "
                "(axis 0, height) and b columns right (axis 1, width) of the window's corner.",
                _conv_kernel_hw_swapped),
        Mistake("SAME padding on the wrong side",
                "With SAME you put the odd extra row/column of zeros at the top/left. TensorFlow pads "
                "P // 2 before and the rest after, P = max((Ho - 1)*s + k - H, 0).",
                _conv_same_wrong_side),
        Mistake("stride ignored",
                "Your output is the stride-1 output: with stride s the window moves s pixels at a time, "
                "out[i, j] starts at row i*s, column j*s, and Ho = (H - kh) // s + 1 (VALID) or "
                "ceil(H / s) (SAME).", _conv_stride_ignored),
        Mistake("kernel channel axes swapped",
                "You read the kernel as (kh, kw, C_out, C_in); tf.nn.conv2d's kernel is "
                "(kh, kw, C_in, C_out): out[..., o] += x[..., c] * kernel[a, b, c, o].",
                _conv_channels_swapped),
    ),
    tf_static=("stride", "padding"),
    benchmarks=_conv_benchmarks,
    answer_calls=("tensorflow.nn.conv2d", "tensorflow.nn.convolution",
                  "tensorflow.raw_ops.Conv2D", "keras.layers.Conv2D", "keras.ops.conv",
                  "scipy.signal.correlate2d", "scipy.signal.convolve2d", "scipy.signal.correlate",
                  "scipy.ndimage.correlate", "cv2.filter2D", "torch.nn.functional.conv2d"),
    library_tiers=("tf",),   # the TF tier's lesson: tf.nn.conv2d's batch axis and strides
    no_loops_over=("x",),   # the numpy tier: no Python loop over pixels
))

register(Exercise(
    name="max_pool2d",
    chapter=CHAPTER,
    minutes={"loops": 10, "numpy": 15, "tf": 10},
    signature="max_pool2d(x, pool_size=2) -> (H // pool_size, W // pool_size, C) float",
    summary="Max over non-overlapping pool_size x pool_size windows, per channel (VALID).",
    tiers={"loops": f"{REF}:max_pool2d_loops", "numpy": f"{REF}:max_pool2d_numpy",
           "tf": f"{REF}:max_pool2d_tf"},
    edge_cases=_pool_edge_cases,
    random_case=_pool_random,
    outputs=(Output("output", "float", rtol=1e-6, atol=1e-6, strict_atol=1e-9),),
    mistakes=(
        Mistake("average instead of max",
                "Your values are window averages: max pooling keeps the largest value of each window.",
                _pool_average),
        Mistake("overlapping windows (stride 1)",
                "Your windows overlap (they move one pixel at a time): here the stride equals the window "
                "size, so window (i, j) covers rows i*p .. i*p + p - 1 and Ho = H // p.", _pool_stride_one),
        Mistake("partial windows kept",
                "You keep a last, partial window when H or W is not a multiple of pool_size: with VALID "
                "pooling (tf.nn.max_pool2d's and Keras' default) it is dropped, Ho = H // p.",
                _pool_keep_partial),
        Mistake("windows taken from the wrong axes",
                "Your windows mix pixels from different places: reshape to (Ho, p, Wo, p, C) (window "
                "rows next to their row index) and take the max over axes 1 and 3, not "
                "reshape(Ho, Wo, p, p, C).", _pool_reshape_wrong),
        Mistake("maximum starts at 0",
                "Windows whose values are all negative give 0: start the running maximum at the "
                "window's first value (or -inf), not at 0.", _pool_start_at_zero),
    ),
    tf_static=("pool_size",),
    benchmarks=_pool_benchmarks,
    answer_calls=("tensorflow.nn.max_pool2d", "tensorflow.nn.max_pool", "tensorflow.nn.pool",
                  "tensorflow.raw_ops.MaxPool", "keras.layers.MaxPooling2D", "keras.ops.max_pool",
                  "skimage.measure.block_reduce", "torch.nn.functional.max_pool2d"),
    library_tiers=("tf",),   # the TF tier's lesson: tf.nn.max_pool2d's batch axis and window
))

register(Exercise(
    name="max_pool2d_backward",
    chapter=CHAPTER,
    minutes={"loops": 15, "numpy": 20, "tf": 20},
    stretch=("tf",),
    signature="max_pool2d_backward(x, grad_out, pool_size=2) -> (H, W, C) float",
    summary="dL/dx of max_pool2d: each window's upstream gradient to its first maximum (row-major, "
            "TensorFlow's rule), 0 elsewhere.",
    tiers={"loops": f"{REF}:max_pool2d_backward_loops", "numpy": f"{REF}:max_pool2d_backward_numpy",
           "tf": f"{REF}:max_pool2d_backward_tf"},
    edge_cases=_pool_backward_edge_cases,
    random_case=_pool_backward_random,
    outputs=(Output("grad_x", "float", rtol=1e-6, atol=1e-6, strict_atol=1e-9),),
    mistakes=(
        Mistake("gradient to every element of the window",
                "Every element of a window gets the window's gradient: only the maximum reached the "
                "output, so only it moves the loss. Route grad_out[i, j, c] to the position of the "
                "window's maximum and leave 0 everywhere else.", _pool_back_every_element),
        Mistake("gradient averaged like average pooling",
                "You spread each window's gradient evenly (grad / p**2), the backward pass of average "
                "pooling. Max pooling's output is one element of the window: give that element the "
                "whole gradient and the others 0.", _pool_back_average),
        Mistake("gradient to every equal maximum",
                "When several elements of a window tie for the maximum you give each of them the "
                "gradient, so the window passes back more than it received. Give it to one: the first "
                "maximum reading the window row by row (np.argmax of the flattened window), as "
                "TensorFlow does.", _pool_back_every_tie),
        Mistake("gradient to the last of equal maxima",
                "With ties your gradient goes to the last of the equal maxima (a >= comparison while "
                "scanning?). The rule here, TensorFlow's, is the first one in row-major order: "
                "replace the running maximum only when a value is strictly larger.", _pool_back_last_tie),
        Mistake("ties broken column by column",
                "With ties your gradient goes to the first maximum reading the window column by "
                "column. Read it row by row (top row first, left to right): flatten each window as "
                "(p rows, p columns) before np.argmax, e.g. transpose (Ho, p, Wo, p, C) to "
                "(Ho, Wo, C, p, p).", _pool_back_column_first),
        Mistake("dropped border not zero",
                "Elements in the rows/columns the pooling drops (the last H % p rows, W % p columns) "
                "got gradient: no window covered them, they never reached the output, so their "
                "gradient is 0. Start from np.zeros_like(x) and fill only x[:Ho * p, :Wo * p].",
                _pool_back_border),
        Mistake("windows overlapping (stride 1)",
                "Your windows start at (i, j) instead of (i * p, j * p): they overlap and miss most "
                "of the image. Window (i, j) covers rows i*p .. i*p + p - 1 and columns "
                "j*p .. j*p + p - 1, the same windows as the forward pass.", _pool_back_stride_one),
        Mistake("windows taken from the wrong axes",
                "Your windows mix pixels from different places: reshape the cropped x to "
                "(Ho, p, Wo, p, C) (a window's rows next to its row index), not (Ho, Wo, p*p, C), "
                "and undo the same reshape/transpose on the way back.", _pool_back_reshape_wrong),
        Mistake("upstream gradient not used",
                "You return the mask of maxima (1 where a maximum is): the chain rule multiplies it "
                "by the upstream gradient, grad_x = mask * grad_out[i, j, c] at each window's "
                "maximum.", _pool_back_mask_only),
    ),
    tf_static=("pool_size",),
    benchmarks=_pool_backward_benchmarks,
    answer_calls=("tensorflow.GradientTape", "tensorflow.gradients", "tensorflow.autodiff.ForwardAccumulator",
                  "tensorflow.raw_ops.MaxPoolGrad", "tensorflow.raw_ops.MaxPoolGradV2",
                  "tensorflow.raw_ops.MaxPoolGradWithArgmax", "tensorflow.raw_ops.MaxPoolWithArgmax",
                  "tensorflow.nn.max_pool_with_argmax", "tensorflow.test.compute_gradient",
                  "jax.grad", "jax.vjp", "torch.autograd.grad", "torch.nn.functional.max_unpool2d"),
    no_loops_over=("x", "grad_out"),   # the numpy tier: no Python loop over pixels or windows
))
