"""Keeps distrax and TensorFlow Probability's JAX substrate importable on current JAX.

TFP 0.25 (the newest release, which distrax imports) reads
`jax.interpreters.xla.pytype_aval_mappings`, an alias of `jax.core.pytype_aval_mappings`
that JAX deprecated in 0.5 and removed in 0.7 (tensorflow/probability issues #1994, #2009):
`import distrax` then fails with an AttributeError. Restoring the alias to the very same
object is what JAX's maintainers suggest; it changes nothing else. Importing vaejax does it
once, only where the alias is missing, so `import vaejax; import distrax` works.
"""
import warnings

import jax.interpreters.xla


def restore_tfp_alias() -> None:
    if hasattr(jax.interpreters.xla, "pytype_aval_mappings"):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from jax import core  # noqa: PLC0415
        mappings = getattr(core, "pytype_aval_mappings", None)
    if mappings is not None:
        jax.interpreters.xla.pytype_aval_mappings = mappings
