"""Transposed convolution by its stride phases (the sub-pixel decomposition): the contract and
results of the textbook tiers of :mod:`workshop.reference.transpose_conv` (checked on every
registry case), timed by ``make bench``.

Zero insertion (the TF tier) correlates a map with ``sh * sw - 1`` zeros in every ``sh x sw``
cell; the phases skip them. Output row ``t = m * sh + p`` (phase ``p = t mod sh``) only gets
the kernel rows ``a = p + u * sh``, from input row ``m - u``::

    full[m*sh + p, n*sw + q] = sum_{u, v} x[m - u, n - v] @ kernel[p + u*sh, q + v*sw].T

so each of the ``sh * sw`` phases is an ordinary stride-1 correlation of ``x`` with the phase's
sub-kernel ``kernel[p::sh, q::sw]`` flipped, and the phases interleave into the output by a
reshape (``(M, sh, N, sw, C) -> (M*sh, N*sw, C)``), whose window ``[top, top + Ho)`` is the result.
Only the phase rows ``m`` from ``top // sh`` that reach the window are computed. Same work as the
scatter-add (``H*W*kh*kw*C_in*C_out`` multiply-adds), a quarter of zero insertion's at stride 2.

* :func:`conv2d_transpose_numpy`: one matrix product per tap (``x @ kernel[a, b].T``, a
  contiguous ``(B, H, W, C_out)`` block), each phase summed from its taps' shifted blocks in a
  contiguous buffer, then interleaved; a float64 result, as the tier. Float32 inputs (``x``
  and ``kernel``) are multiplied and summed in float32, as TensorFlow does (about twice as fast;
  the result then differs from the float64 reference by float32 rounding, inside the
  exercise's tolerance); any other input in float64.
* :func:`conv2d_transpose_tf`: the same plan as one TF graph (all taps' products in one
  matrix product, the phases summed from shifted blocks, interleaved by stack and reshape);
  ``x``'s dtype. Needs static sizes: a shape-relaxed trace falls back to the zero-insertion
  tier.
"""

from __future__ import annotations

import numpy as np

from ..reference.transpose_conv import _as_float, _geometry, _padding, _pair
from ..reference.transpose_conv import conv2d_transpose_tf as _zero_insertion_tf

__all__ = ["conv2d_transpose_numpy", "conv2d_transpose_tf"]


def _phase_rows(top: int, stride: int, out_size: int) -> tuple[int, int]:
    """First phase row ``m0 = top // stride`` and the number ``M`` of phase rows from it that
    cover output rows ``[top, top + out_size)`` once interleaved."""
    m0 = top // stride
    return m0, -(-(top - m0 * stride + out_size) // stride)


def _as_arrays(x, kernel) -> tuple[np.ndarray, np.ndarray]:
    """Both float32 arrays stay float32; anything else becomes float64 (checked as the tier)."""
    xa, ka = np.asarray(x), np.asarray(kernel)
    if xa.dtype == np.float32 and ka.dtype == np.float32:
        return xa, ka
    return _as_float(x, "x"), _as_float(kernel, "kernel")


def _summed(buffer: np.ndarray, terms) -> np.ndarray:
    """``buffer`` set to the sum of ``terms`` (``(window, block)``: ``block`` adds into
    ``buffer[window]``), zero elsewhere; a block covering all of ``buffer`` starts it (no
    zero fill)."""
    whole = next((i for i, (window, block) in enumerate(terms) if block.shape == buffer.shape), None)
    if whole is None:
        buffer[...] = 0
    else:
        np.copyto(buffer, terms.pop(whole)[1])
    for window, block in terms:
        buffer[window] += block
    return buffer


def conv2d_transpose_numpy(x, kernel, strides=1, padding="VALID", output_shape=None) -> np.ndarray:
    """Transposed convolution by stride phases.

    Same arguments and result as :func:`workshop.reference.transpose_conv.conv2d_transpose_loops`:
    ``x`` ``(H, W, C_in)`` or ``(B, H, W, C_in)``, ``kernel`` ``(kh, kw, C_out, C_in)``; float64
    ``(Ho, Wo, C_out)`` or ``(B, Ho, Wo, C_out)``. Per tap, ``x @ kernel[a, b].T`` as a contiguous
    ``(B, H, W, C_out)`` block (one product per image row: small products, which a shared,
    busy machine's multithreaded BLAS does not stall on); each phase ``(p, q)`` sums its taps'
    blocks, shifted by ``(a // sh, b // sw)`` pixels, in a contiguous buffer (long rows: fast
    adds), then goes into its place of the interleaved output (module doc). Float32 ``x`` and
    ``kernel`` are multiplied and summed in float32 (module doc), anything else in float64.
    """
    x, kernel = _as_arrays(x, kernel)
    batched, sh, sw, out_h, out_w, top, left = _geometry(x.shape, kernel.shape, strides, padding,
                                                         output_shape)
    xb = x if batched else x[None]
    n_b, h, w, c_in = xb.shape
    kh, kw, c_out, _ = kernel.shape
    m0, rows = _phase_rows(top, sh, out_h)
    n0, cols = _phase_rows(left, sw, out_w)
    y = np.empty((kh, kw, n_b, h, w, c_out), x.dtype)
    for a in range(kh):
        for b in range(kw):
            np.matmul(xb, kernel[a, b].T, out=y[a, b])
    full = np.empty((n_b, rows, sh, cols, sw, c_out))
    phase = np.empty((n_b, rows, cols, c_out), x.dtype)
    for p in range(sh):
        for q in range(sw):
            terms = []                                   # (phase window, shifted tap block)
            for a in range(p, kh, sh):
                u = a // sh                              # phase row j reads input row m0 + j - u
                i0, i1 = max(0, u - m0), min(rows, h + u - m0)
                for b in range(q, kw, sw):
                    v = b // sw
                    j0, j1 = max(0, v - n0), min(cols, w + v - n0)
                    if i1 > i0 and j1 > j0:
                        terms.append(((slice(None), slice(i0, i1), slice(j0, j1)),
                                      y[a, b, :, m0 + i0 - u:m0 + i1 - u, n0 + j0 - v:n0 + j1 - v]))
            full[:, :, p, :, q] = _summed(phase, terms)
    full = full.reshape(n_b, rows * sh, cols * sw, c_out)
    r0, c0 = top - m0 * sh, left - n0 * sw
    out = full[:, r0:r0 + out_h, c0:c0 + out_w]
    return out if batched else out[0]


def _span(t, start: int, length: int, axis: int):
    """``t``'s entries ``start .. start + length - 1`` along ``axis``, zero outside ``t``."""
    import tensorflow as tf

    size = t.shape[axis]
    before, after = max(0, -start), max(0, start + length - size)
    if before or after:
        pads = [[0, 0]] * t.shape.rank
        pads[axis] = [before, after]
        t = tf.pad(t, pads)
    begin = [0] * t.shape.rank
    extent = [-1] * t.shape.rank
    begin[axis], extent[axis] = start + before, length
    return tf.slice(t, begin, extent)


def conv2d_transpose_tf(x, kernel, strides=1, padding="VALID", output_shape=None):
    """Transposed convolution by stride phases in pure TF (works under
    ``tf.function(jit_compile=True)``).

    Same arguments as :func:`workshop.reference.transpose_conv.conv2d_transpose_loops`
    (``strides``, ``padding``, ``output_shape`` Python values); tensors in and out, ``x``'s
    float dtype. The numpy kernel's plan as one graph: every tap's product ``x @ kernel[a, b].T``
    in a single matrix product (``(B*H*W, C_in) @ (C_in, kh*kw*C_out)``: exactly the
    multiply-adds the result needs, in one large GEMM), each phase the sum of its taps' shifted
    blocks, the phases interleaved by ``stack`` and ``reshape``, the output window cropped. For a
    3x3 kernel at stride 2 this measured faster here under XLA than convolutions per phase (which
    compute 12 or 16 tap products for 9). Needs static sizes of ``x`` and ``kernel``; without
    them (a shape-relaxed trace) it is the zero-insertion tier
    :func:`workshop.reference.transpose_conv.conv2d_transpose_tf`.
    """
    import tensorflow as tf

    xt = tf.convert_to_tensor(x)
    if not xt.dtype.is_floating:
        xt = tf.cast(xt, tf.float32)
    kt = tf.cast(tf.convert_to_tensor(kernel), xt.dtype)
    if xt.shape.rank not in (3, 4) or kt.shape.rank != 4 or None in xt.shape or None in kt.shape:
        return _zero_insertion_tf(xt, kt, strides, padding, output_shape)
    batched, sh, sw, out_h, out_w, top, left = _geometry(
        tuple(xt.shape), tuple(kt.shape), _pair(strides, "strides"), _padding(padding),
        output_shape)
    xb = xt if batched else xt[None]
    n_b, h, w, c_in = xb.shape
    kh, kw, c_out, _ = kt.shape
    (m0, rows), (n0, cols) = _phase_rows(top, sh, out_h), _phase_rows(left, sw, out_w)
    taps = tf.reshape(tf.transpose(kt, [3, 0, 1, 2]), [c_in, kh * kw * c_out])
    y = tf.reshape(tf.reshape(xb, [n_b * h * w, c_in]) @ taps, [n_b, h, w, kh, kw, c_out])
    phase_rows = []
    for p in range(sh):
        phase_cols = []
        for q in range(sw):
            total = tf.zeros([n_b, rows, cols, c_out], xt.dtype)
            for a in range(p, kh, sh):                   # phase row j reads input row m0 + j - a // sh
                for b in range(q, kw, sw):
                    block = _span(y[:, :, :, a, b], m0 - a // sh, rows, 1)
                    total += _span(block, n0 - b // sw, cols, 2)
            phase_cols.append(total)
        phase_rows.append(tf.stack(phase_cols, axis=3))  # (B, rows, cols, sw, C_out)
    full = tf.reshape(tf.stack(phase_rows, axis=2), [n_b, rows * sh, cols * sw, c_out])
    r0, c0 = top - m0 * sh, left - n0 * sw
    out = full[:, r0:r0 + out_h, c0:c0 + out_w]
    return out if batched else out[0]
