"""Tests for vaejax.data.preprocessing: each kind's distribution and range, jit, the registry."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import data
from vaejax.data import preprocessing


def test_dynamic_binarize_mean_matches_intensity_and_changes_with_key():
    levels = np.arange(256, dtype=np.uint8)
    x = np.tile(levels, (4_000, 1))                                    # 4000 draws per level
    sample = data.dynamic_binarize(jax.random.key(0), x)
    chex.assert_shape(sample, x.shape)
    assert sample.dtype == jnp.float32
    sample = np.asarray(sample)
    assert set(np.unique(sample).tolist()) <= {0.0, 1.0}
    p = levels / 255.0
    se = np.sqrt(p * (1 - p) / x.shape[0])
    assert np.all(np.abs(sample.mean(axis=0) - p) <= 5 * se + 1e-7)  # every level, 5 s.e.
    assert np.any(np.asarray(data.dynamic_binarize(jax.random.key(1), x)) != sample)
    np.testing.assert_array_equal(data.dynamic_binarize(jax.random.key(0), x), sample)
    assert sample[:, 0].max() == 0 and sample[:, -1].min() == 1       # 0 and 255 are fixed


def test_binarization_threshold_is_x_times_65536_over_255_rounded():
    x = np.arange(256)
    expected = np.floor(x * 65536 / 255 + 0.5).astype(np.uint32)   # never a tie: 255 is odd
    np.testing.assert_array_equal(data.binarization_threshold(x.astype(np.uint8)), expected)
    assert expected[0] == 0 and expected[255] == 65536               # P(1) exactly 0 and 1


def test_threshold_scale_and_dequantize_ranges():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(data.threshold(x), (np.arange(256) >= 128).reshape(16, 16))
    np.testing.assert_array_equal(data.threshold(x, level=0.9),
                                  (np.arange(256) > 229.5).reshape(16, 16))
    scaled = data.to_unit_interval(x)
    assert scaled.dtype == jnp.float32
    np.testing.assert_allclose(scaled, x / 255.0, rtol=1e-6)
    # Dequantized pixels land in [x/256, (x+1)/256) and strictly inside (0, 1), even at 255,
    # where float32 rounds (255 + u)/256 up to 1.0 for u within 2**-16 of 1.
    y = np.asarray(data.dequantize(jax.random.key(2), x), np.float64)
    assert np.all(y >= x / 256.0) and np.all(y <= (x + 1.0) / 256.0)
    top = np.asarray(data.dequantize(jax.random.key(3), np.full(1_000_000, 255, np.uint8)))
    bottom = np.asarray(data.dequantize(jax.random.key(3), np.zeros(1_000_000, np.uint8)))
    assert top.max() < 1.0 and bottom.min() > 0.0
    assert abs(bottom.mean(dtype=np.float64) - 0.5 / 256) < 1e-5      # uniform noise, mean 1/2
    with pytest.raises(TypeError, match="uint8"):
        data.to_unit_interval(scaled)


@pytest.mark.parametrize("kind", data.PREPROCESSING)
def test_preprocess_under_jit_matches_eager(kind):
    x = jax.random.randint(jax.random.key(5), (3, 28, 28, 1), 0, 256).astype(jnp.uint8)
    key = jax.random.key(6)
    jitted = jax.jit(data.preprocess, static_argnames="kind")(key, x, kind=kind)
    eager = data.preprocess(key, x, kind=kind)
    chex.assert_shape(jitted, x.shape)
    assert jitted.dtype == jnp.float32
    np.testing.assert_allclose(jitted, eager, atol=1e-6)


def test_preprocess_unknown_kind_lists_the_kinds():
    with pytest.raises(ValueError, match="dequantize.*dynamic_binarize.*scale.*threshold"):
        data.preprocess(jax.random.key(0), jnp.zeros(3, jnp.uint8), kind="binarize")


def test_registry_rejects_an_unknown_name_naming_the_kinds():
    with pytest.raises(ValueError, match="Unknown data.preprocessing 'binarize'") as info:
        preprocessing.preprocessing_fn("binarize")
    for kind in ("dynamic_binarize", "threshold", "scale", "dequantize"):
        assert repr(kind) in str(info.value)
    with pytest.raises(ValueError, match="choose one of"):
        preprocessing.preprocessing_fn(None)


@pytest.mark.parametrize("kind,reference", [
    ("dynamic_binarize", lambda key, x: data.dynamic_binarize(key, x)),
    ("threshold", lambda key, x: data.threshold(x)),
    ("scale", lambda key, x: data.to_unit_interval(x)),
    ("dequantize", lambda key, x: data.dequantize(key, x)),
    ("identity", lambda key, x: x.astype(jnp.float32)),
])
def test_registry_holds_every_kind_as_a_function_of_key_and_pixels(kind, reference):
    assert preprocessing.PREPROCESSING == ("dequantize", "dynamic_binarize", "identity", "scale",
                                           "threshold")
    x = jax.random.randint(jax.random.key(7), (4, 28, 28, 1), 0, 256).astype(jnp.uint8)
    key = jax.random.key(8)
    fn = preprocessing.preprocessing_fn(kind)
    expected = jax.jit(reference)(key, x)
    np.testing.assert_array_equal(jax.jit(fn)(key, x), expected)                # bitwise
    jitted = jax.jit(data.preprocess, static_argnames="kind")(key, x, kind=kind)
    np.testing.assert_array_equal(jitted, expected)


def test_a_preprocessing_of_ones_own_is_read_from_the_experiment_folder(tmp_path, mnist_dir):
    """`data.preprocessing = "module:attribute"`: trained with, and evaluated with (its
    `binary` attribute picks the Bernoulli likelihood's single-pass form)."""
    from run_helpers import small_config
    from vaejax import train

    (tmp_path / "my_preprocessing.py").write_text(
        "import jax.numpy as jnp\n"
        "def inverted(key, x_uint8):\n"
        "    del key\n"
        "    return (x_uint8 < 128).astype(jnp.float32)\n"
        "inverted.binary = True\n")
    config = small_config(mnist_dir, **{"data.preprocessing": "my_preprocessing:inverted",
                                        "train.epochs": 1})
    config.experiment_dir = str(tmp_path)
    result = train.train(config, tmp_path / "run", log=lambda *_: None)
    assert np.isfinite(result["results"]["test/nll"])
    fn = preprocessing.preprocessing_fn("my_preprocessing:inverted", search_path=str(tmp_path))
    x = jnp.asarray([0, 127, 128, 255], jnp.uint8)
    np.testing.assert_array_equal(fn(None, x), [1.0, 1.0, 0.0, 0.0])
    assert data.is_binary(fn) and not data.is_binary("scale")
