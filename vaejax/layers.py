"""2-D `Conv` and `ConvTranspose` computed as matrix multiplies, drop-in for flax's.

Same fields (`features`, `kernel_size`, `strides`, `padding="SAME"`), parameters
("kernel" `(kh, kw, Cin, Cout)`, "bias" `(Cout,)`), initializers and function as
`flax.linen.Conv` and `flax.linen.ConvTranspose` (the latter with its default
`transpose_kernel=False`), so checkpoints of either load into the other.

Why: XLA:CPU runs these small convolutions slowly, above all the gradients of strided
convolutions and the input-dilated convolution behind `lax.conv_transpose` (which also
multiplies the zeros it inserts). As matmuls, the conv VAE (experiments/cvae_mnist.py)
trains about an order of magnitude faster on CPU; the measured epoch times, against the
FLOP floor, are in benchmarks/RESULTS.md.

Every convolution here is a correlation of a zero-padded input, computed one of two ways:

  * gather (im2col): shifted, strided slices of the input concatenated on the channel
    axis, `(Ho, Wo, kh*kw*Cin)`, times `kernel.reshape(kh*kw*Cin, Cout)`;
  * scatter (col2im), stride 1 only: `x @ kernel` as `(Cin, kh*kw*Cout)` first, then the
    sum of the kh*kw shifted `Cout`-channel blocks. It shifts `Cout` channels instead of
    `Cin`, so it is used when `Cout < Cin` (the decoder's last layer, 32 -> 1 channels:
    a quarter of the time per training step, measured on CPU).

The gradients of slices, pads and concatenations are slices, pads and concatenations,
so forward and backward passes are matmuls plus cheap data movement.

`ConvTranspose` with stride s is split into its s*s output phases (sub-pixel
convolution): output pixel `(s*q + a, s*r + b)` meets only the kernel taps
`kernel[ta::s, tb::s]`, which read the undilated input at consecutive offsets from
`(q, r)`. Each phase is a stride-1 gather (no multiplications by inserted zeros), and the
phases are interleaved (depth-to-space). Stride 1 is a single phase, left to `correlate`
(scatter when `Cout < Cin`); the phases of stride s > 1 always gather, since scattered
phases measured slower on XLA:CPU (through their backward pass).

Inputs are `(..., H, W, Cin)`: one example, or any leading batch axes; `jax.vmap` works.
`correlate` and `conv_transpose` are jitted, so that op-by-op calls (tests, eager
`init`) compile one program per layer rather than one per slice.
"""

from __future__ import annotations

import functools
import operator
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

Array = jax.Array
Pads = tuple[tuple[int, int], tuple[int, int]]


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, int) else tuple(v)
    if len(pair) != 2:
        raise ValueError(f"Expected an int or a pair of ints, got {v!r}.")
    return pair


def _pad_hw(x: Array, pads: Pads) -> Array:
    """Zero-pads (or, for negative pads, crops) the axes H, W of `x` `(..., H, W, C)`."""
    config = [(0, 0, 0)] * (x.ndim - 3) + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def _shifted(x: Array, start: tuple[int, int], shape: tuple[int, int],
             strides: tuple[int, int] = (1, 1)) -> Array:
    """`x[..., h0::sh, w0::sw, :]` cut to `shape` = (Ho, Wo)."""
    axis = x.ndim - 3
    for k, (i, n, s) in enumerate(zip(start, shape, strides)):
        x = lax.slice_in_dim(x, i, i + (n - 1) * s + 1, s, axis + k)
    return x


def _out_shape(x: Array, kernel: Array, pads: Pads, strides: tuple[int, int]) -> tuple[int, int]:
    return tuple((n + lo + hi - k) // s + 1
                 for n, (lo, hi), k, s in zip(x.shape[-3:-1], pads, kernel.shape[:2], strides))


def gather_correlate(x: Array, kernel: Array, pads: Pads, strides: tuple[int, int]) -> Array:
    """Correlation by im2col: `y[o, p] = sum_{i,j} x_pad[o*sh + i, p*sw + j] @ kernel[i, j]`.

    Args:
      x: `(..., H, W, Cin)`; `x_pad` is `x` padded by `pads` ((lo, hi), (lo, hi)).
      kernel: `(kh, kw, Cin, Cout)`.
      pads: zero padding of H and W; negative values crop.
      strides: `(sh, sw)`.

    Returns:
      `(..., Ho, Wo, Cout)`, `Ho = (H + lo + hi - kh) // sh + 1` (likewise `Wo`).
    """
    kh, kw, cin, cout = kernel.shape
    shape = _out_shape(x, kernel, pads, strides)
    x = _pad_hw(x, pads)
    patches = [_shifted(x, (i, j), shape, strides) for i in range(kh) for j in range(kw)]
    patches = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
    return patches @ kernel.reshape(kh * kw * cin, cout)


def scatter_correlate(x: Array, kernel: Array, pads: Pads) -> Array:
    """Stride-1 correlation by col2im: the same `y` as `gather_correlate`, multiplying first.

    `z = x @ kernel`, `(..., H, W, kh, kw, Cout)` flattened on the channel axis, is padded
    by `pads`, and `y[o, p] = sum_{i,j} z_pad[o + i, p + j, i, j]`.

    Args:
      x: `(..., H, W, Cin)`.
      kernel: `(kh, kw, Cin, Cout)`.
      pads: zero padding of H and W; negative values crop.

    Returns:
      `(..., Ho, Wo, Cout)`, `Ho = H + lo + hi - kh + 1` (likewise `Wo`).
    """
    kh, kw, cin, cout = kernel.shape
    shape = _out_shape(x, kernel, pads, (1, 1))
    z = _pad_hw(x @ kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout), pads)
    axis = z.ndim - 1
    blocks = [lax.slice_in_dim(_shifted(z, (i, j), shape), (i * kw + j) * cout,
                               (i * kw + j + 1) * cout, axis=axis)
              for i in range(kh) for j in range(kw)]
    return functools.reduce(operator.add, blocks)


@functools.partial(jax.jit, static_argnames=("pads", "strides"))
def correlate(x: Array, kernel: Array, pads: Pads, strides: tuple[int, int]) -> Array:
    """`gather_correlate`, or `scatter_correlate` for stride 1 when `Cout < Cin`."""
    cin, cout = kernel.shape[2:]
    if strides == (1, 1) and cout < cin:
        return scatter_correlate(x, kernel, pads)
    return gather_correlate(x, kernel, pads, strides)


def conv_transpose_same_padding(k: int, s: int) -> int:
    """Low-side padding of the stride-dilated input in `lax.conv_transpose(..., "SAME")`.

    The output has length `n*s`: `y[o] = sum_t dilated(x)[o + t - pad] * kernel[t]`,
    where `dilated(x)[s*m] = x[m]` and is zero between.
    """
    return k - 1 if s > k - 1 else -(-(k + s - 2) // 2)


def transpose_phases(k: int, s: int) -> list[tuple[int, int, int]]:
    """Per output phase a in range(s), along one axis: `(first_tap, num_taps, offset)`.

    Output `s*q + a` of a SAME transposed conv is
    `sum_{m < num_taps} x[q + offset + m] * kernel[first_tap + m*s]`.
    """
    pad = conv_transpose_same_padding(k, s)
    phases = []
    for a in range(s):
        first = (pad - a) % s
        phases.append((first, len(range(first, k, s)), (a + first - pad) // s))
    return phases


@functools.partial(jax.jit, static_argnames="strides")
def conv_transpose(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
    """`lax.conv_transpose(x, kernel, strides, "SAME")` (HWIO kernel, not flipped), by phases.

    Args:
      x: `(..., H, W, Cin)`.
      kernel: `(kh, kw, Cin, Cout)`.
      strides: `(sh, sw)`.

    Returns:
      `(..., H*sh, W*sw, Cout)`.
    """
    *batch, h, w, _ = x.shape
    kh, kw, _, cout = kernel.shape
    (sh, sw) = strides
    if strides == (1, 1):
        ph, pw = conv_transpose_same_padding(kh, 1), conv_transpose_same_padding(kw, 1)
        return correlate(x, kernel, ((ph, kh - 1 - ph), (pw, kw - 1 - pw)), strides)
    rows = []
    for th, nh, oh in transpose_phases(kh, sh):
        cols = []
        for tw, nw, ow in transpose_phases(kw, sw):
            if nh and nw:
                pads = ((-oh, oh + nh - 1), (-ow, ow + nw - 1))
                cols.append(gather_correlate(x, kernel[th::sh, tw::sw], pads, (1, 1)))
            else:
                cols.append(jnp.zeros((*batch, h, w, cout), jnp.result_type(x, kernel)))
        rows.append(jnp.stack(cols, axis=-2))
    return jnp.stack(rows, axis=-4).reshape(*batch, h * sh, w * sw, cout)


def _add_bias(y: Array, bias: Array | None) -> Array:
    return y if bias is None else y + bias.reshape((1,) * (y.ndim - 1) + (-1,))


class _SameConv(nn.Module):
    """The fields and parameters `Conv` and `ConvTranspose` share with flax's layers."""

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: str = "SAME"
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    def _inputs(self, x: Array):
        """`(x, kernel, bias, kernel_size, strides)`, creating "kernel" and "bias" like flax."""
        if self.padding != "SAME":
            raise NotImplementedError(f"Only padding='SAME' is supported, got {self.padding!r}.")
        kernel_size, strides = _pair(self.kernel_size), _pair(self.strides)
        kernel = self.param("kernel", self.kernel_init, (*kernel_size, x.shape[-1], self.features),
                            self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        return x, kernel, bias, kernel_size, strides


class Conv(_SameConv):
    """2-D convolution, SAME padding: `(..., H, W, Cin)` -> `(..., ceil(H/sh), ceil(W/sw), features)`.

    Same parameters and function as `flax.linen.Conv(features, kernel_size, strides,
    padding="SAME")`; `kernel_size` and `strides` are ints or pairs.
    """

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x, kernel, bias, kernel_size, strides = self._inputs(x)
        pads = tuple(lax.padtype_to_pads(x.shape[-3:-1], kernel_size, strides, "SAME"))
        return _add_bias(correlate(x, kernel, pads, strides), bias)


class ConvTranspose(_SameConv):
    """2-D transposed convolution, SAME padding: `(..., H, W, Cin)` -> `(..., H*sh, W*sw, features)`.

    Same parameters and function as `flax.linen.ConvTranspose(features, kernel_size,
    strides, padding="SAME")` with its default `transpose_kernel=False`; `kernel_size`
    and `strides` are ints or pairs.
    """

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x, kernel, bias, _, strides = self._inputs(x)
        return _add_bias(conv_transpose(x, kernel, strides), bias)
