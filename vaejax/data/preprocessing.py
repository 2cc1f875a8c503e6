"""Pure, jittable preprocessing of uint8 pixels into float32 model inputs, any shape: scaling
to [0, 1], dynamic binarization (a fresh Bernoulli draw per pixel and step), a fixed threshold
and uniform dequantization, each selected by name through the registry `PREPROCESSORS` that
`config.data.preprocessing` names (the names are `PREPROCESSING`). Every entry is a function
of `(key, x_uint8)`; one whose output is in {0, 1} says so with `binary = True`, and the
evaluation then uses the Bernoulli likelihood's single-pass form. Your own:
`data.preprocessing = "my_module:my_preprocessing"`, imported from the experiment's folder.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import registry

__all__ = [
    "PREPROCESSING",
    "PREPROCESSORS",
    "as_float",
    "is_binary",
    "binarization_threshold",
    "dequantize",
    "dynamic_binarize",
    "preprocess",
    "preprocessing_fn",
    "threshold",
    "to_unit_interval",
]


def _require_uint8(x):
    x = jnp.asarray(x)
    if x.dtype != jnp.uint8:
        raise TypeError(f"expected uint8 pixels, got {x.dtype}")
    return x


def to_unit_interval(x_uint8):
    """x / 255 as float32 in [0, 1]."""
    return _require_uint8(x_uint8).astype(jnp.float32) / 255.0


def dynamic_binarize(key, x_uint8):
    """A fresh Bernoulli(x / 255) draw per pixel, float32 in {0, 1}; 0 and 255 are deterministic.

    Each 32-bit random word serves two pixels: pixel = [u16 < round(x * 65536 / 255)] with
    u16 uniform on {0, ..., 65535}, so P(1) = x / 255 to within 2^-17 (exact at 0 and 255).
    This halves the random-number work, which is a fifth of a CPU training epoch.
    """
    _require_uint8(x_uint8)
    n = x_uint8.size
    words = jax.random.bits(key, ((n + 1) // 2,), jnp.uint32)
    u16 = jnp.concatenate([words & 0xFFFF, words >> 16])[:n].reshape(x_uint8.shape)
    return (u16 < binarization_threshold(x_uint8)).astype(jnp.float32)


def binarization_threshold(x_uint8):
    """round(x * 65536 / 255) as uint32, without a division: 65536 / 255 = 257 + 1/255, so
    it is 257 x + [x >= 128]. (An integer division per pixel costs ~3% of a CPU epoch.)"""
    x = x_uint8.astype(jnp.uint32)
    return x * 257 + (x >= 128).astype(jnp.uint32)


def threshold(x_uint8, *, level=0.5):
    """1.0 where x / 255 > level, else 0.0 (float32)."""
    return (to_unit_interval(x_uint8) > level).astype(jnp.float32)


_BELOW_ONE = float(np.nextafter(np.float32(1), np.float32(0)))   # 1 - 2**-24
_ABOVE_ZERO = 2.0 ** -32


def dequantize(key, x_uint8):
    """(x + u) / 256 with u ~ U[0, 1) per pixel: float32 in the open interval (0, 1).

    Values float32 would round to exactly 0 or 1 (u == 0 at x = 0; u near 1 at x = 255) are
    clipped to 2**-32 and 1 - 2**-24, so logit(x) and log(x) stay finite.
    """
    x = _require_uint8(x_uint8).astype(jnp.float32)
    u = jax.random.uniform(key, x.shape, jnp.float32)
    return jnp.clip((x + u) / 256.0, _ABOVE_ZERO, _BELOW_ONE)


def _threshold_ignoring_key(key, x_uint8):
    """`threshold` at level 0.5; `key` is unused (the binarization is fixed)."""
    del key
    return threshold(x_uint8)


def _scale_ignoring_key(key, x_uint8):
    """`to_unit_interval`; `key` is unused."""
    del key
    return to_unit_interval(x_uint8)


def as_float(key, x):
    """x as float32, values unchanged: for data that are already the model's inputs (a
    dataset of floats); `key` is unused."""
    del key
    return jnp.asarray(x, jnp.float32)


# The preprocessing kinds by name, each a function of (key, x_uint8) -> float32 of x's shape.
PREPROCESSORS = registry.Registry("preprocessing", "data.preprocessing")
for _name, _fn, _binary in (("dynamic_binarize", dynamic_binarize, True),
                            ("threshold", _threshold_ignoring_key, True),
                            ("scale", _scale_ignoring_key, False),
                            ("dequantize", dequantize, False),
                            ("identity", as_float, False)):
    _fn.binary = _binary
    PREPROCESSORS.register(_name)(_fn)
PREPROCESSING = tuple(PREPROCESSORS.names())


def preprocessing_fn(kind: str | Callable, *, search_path: str | None = None) -> Callable:
    """The function of (key, x_uint8) that `kind` names (registered, or "module:attribute"
    imported with `search_path`, the experiment's folder, on sys.path); a function is returned
    as it is. A ValueError naming the kinds for an unknown name."""
    if callable(kind):
        return kind
    if not isinstance(kind, str):
        raise ValueError(f"Unknown data.preprocessing {kind!r}; choose one of {list(PREPROCESSING)} "
                         "or give your own as \"module:attribute\".")
    return PREPROCESSORS.get(kind, search_path=search_path)


def is_binary(kind: str | Callable) -> bool:
    """Whether the preprocessing `kind` names gives x in {0, 1} (its `binary` attribute)."""
    return bool(getattr(preprocessing_fn(kind), "binary", False))


def preprocess(key, x_uint8, *, kind: str | Callable):
    """Applies the preprocessing `kind` names (static: a name of PREPROCESSING or the function
    itself). "threshold" and "scale" ignore `key`."""
    return preprocessing_fn(kind)(key, x_uint8)
