"""vaejax's losses inside models written in Flax NNX and in Equinox.

`NNX_EXAMPLE` and `EQUINOX_EXAMPLE` below are the two code blocks of the README section
"Using vaejax's losses in your own model", and these tests run them as they are: each defines
a small VAE whose bound methods `model.encode` (ONE x -> (mean, logvar)) and `model.decode`
(ONE z -> Bernoulli logits) go straight into `vaejax.batch_elbo`, with no adapter, and trains
it for 200 steps on a fixed synthetic binary dataset. The tests check that the ELBO rises, that
the 50-sample IWAE bound of the trained model lies above its ELBO, and that the gradient of
`vaejax.elbo` w.r.t. each framework's parameters equals that of a hand-written ELBO with the
same reparameterized draw. `test_readme_interop_examples_match` keeps the README's copies equal
to these strings.
"""
import functools
import pathlib
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vaejax

REPO = pathlib.Path(__file__).resolve().parents[1]
README_HEADING = re.compile(r"^#+ Using vaejax's losses in your own model\s*$")

NNX_EXAMPLE = '''\
import jax, jax.numpy as jnp, numpy as np, optax, vaejax
from flax import nnx

class VAE(nnx.Module):                        # 16 pixels -> 2 latents -> 16 Bernoulli logits
    def __init__(self, rngs):
        self.enc1, self.enc2 = nnx.Linear(16, 32, rngs=rngs), nnx.Linear(32, 2 * 2, rngs=rngs)
        self.dec1, self.dec2 = nnx.Linear(2, 32, rngs=rngs), nnx.Linear(32, 16, rngs=rngs)
    def encode(self, x):                      # ONE example (16,) -> mean, logvar: (2,) each
        mean, logvar = jnp.split(self.enc2(jnp.tanh(self.enc1(x))), 2)
        return mean, logvar
    def decode(self, z):                      # ONE latent (2,) -> logits (16,)
        return self.dec2(jnp.tanh(self.dec1(z)))

@nnx.jit
def train_step(model, optimizer, key, x_batch):
    loss_fn = lambda model: -vaejax.batch_elbo(key, x_batch, model.encode, model.decode)[0]
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)            # flax >= 0.11 takes the model too
    return loss

rng = np.random.default_rng(0)                # 256 noisy copies of 4 random 16-pixel prototypes
prototypes = rng.random((4, 16)) < 0.5
x = jnp.asarray(prototypes[rng.integers(0, 4, 256)] ^ (rng.random((256, 16)) < 0.05), jnp.float32)
model, train_key = VAE(nnx.Rngs(0)), jax.random.key(1)
optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
losses = [float(train_step(model, optimizer, jax.random.fold_in(train_key, i), x)) for i in range(200)]
'''

EQUINOX_EXAMPLE = '''\
import equinox as eqx, jax, jax.numpy as jnp, numpy as np, optax, vaejax

class VAE(eqx.Module):                        # 16 pixels -> 2 latents -> 16 Bernoulli logits
    encoder: eqx.nn.MLP
    decoder: eqx.nn.MLP
    def __init__(self, key):
        enc_key, dec_key = jax.random.split(key)
        self.encoder = eqx.nn.MLP(16, 2 * 2, 32, depth=1, activation=jnp.tanh, key=enc_key)
        self.decoder = eqx.nn.MLP(2, 16, 32, depth=1, activation=jnp.tanh, key=dec_key)
    def encode(self, x):                      # ONE example (16,) -> mean, logvar: (2,) each
        mean, logvar = jnp.split(self.encoder(x), 2)
        return mean, logvar
    def decode(self, z):                      # ONE latent (2,) -> logits (16,)
        return self.decoder(z)

@eqx.filter_jit
def train_step(model, opt_state, key, x_batch):
    loss_fn = lambda model: -vaejax.batch_elbo(key, x_batch, model.encode, model.decode)[0]
    loss, grads = eqx.filter_value_and_grad(loss_fn)(model)
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, updates), opt_state, loss

rng = np.random.default_rng(0)                # 256 noisy copies of 4 random 16-pixel prototypes
prototypes = rng.random((4, 16)) < 0.5
x = jnp.asarray(prototypes[rng.integers(0, 4, 256)] ^ (rng.random((256, 16)) < 0.05), jnp.float32)
model, train_key, optimizer = VAE(jax.random.key(0)), jax.random.key(1), optax.adam(1e-2)
opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
losses = []
for step in range(200):
    model, opt_state, loss = train_step(model, opt_state, jax.random.fold_in(train_key, step), x)
    losses.append(float(loss))
'''

EXAMPLES = {"nnx": NNX_EXAMPLE, "equinox": EQUINOX_EXAMPLE}

IWAE_K = 50
# Measured with the examples' code over 10 init/training seeds x 3 data seeds: in 200 steps
# the dataset-averaged ELBO rises by 6.2-9.3 nats (NNX) and 5.8-6.7 nats (Equinox), from
# -14.2 to -11.0 nats to -5.4 to -4.9 nats (log p(x) under the data's source is about -4.6
# nats), and the training loss falls by at least 5.7 nats. On the trained models the
# 50-sample IWAE bound exceeds the dataset-averaged ELBO by 0.21-0.33 nats, at least 13
# standard errors of that average.
MIN_ELBO_GAIN = 4.0      # nats per example
MIN_IWAE_GAP = 0.0       # nats per example, plus 3 standard errors of the averaged gap


def run_example(framework, *, train=True):
    """Runs the README example; with train=False, everything before the training loop.

    Returns its namespace (`VAE`, `model`, `x`, `losses`, ...) and, when trained, the
    per-example ELBO and IWAE bound of the model before training.
    """
    setup, loop = re.split(r"^(?=losses = )", EXAMPLES[framework], maxsplit=1, flags=re.M)
    namespace = {"__name__": f"readme_{framework}_example"}
    exec(compile(setup, f"<{framework} example>", "exec"), namespace)
    if not train:
        return namespace, None
    initial = dataset_bounds(namespace["model"], namespace["x"])
    exec(compile(loop, f"<{framework} example: training>", "exec"), namespace)
    return namespace, initial


# -- evaluation ---------------------------------------------------------------------------------

def _dataset_bounds(model, x, key):
    keys = jax.random.split(key, x.shape[0])

    def both(key, x_i):
        elbo, _ = vaejax.elbo(key, x_i, model.encode, model.decode, num_samples=IWAE_K)
        iwae, _ = vaejax.iwae_bound(key, x_i, model.encode, model.decode, num_samples=IWAE_K)
        return elbo, iwae

    return jax.vmap(both)(keys, x)


_nnx_dataset_bounds = nnx.jit(_dataset_bounds)
_eqx_dataset_bounds = eqx.filter_jit(_dataset_bounds)


def dataset_bounds(model, x):
    """Per-example ELBO (closed-form KL, K draws) and K-sample IWAE bound, each (N,), in nats.

    Both use the same K draws of each example (the same key; vaejax draws z the same way in
    both), so their difference carries little Monte Carlo noise.
    """
    bounds = _nnx_dataset_bounds if isinstance(model, nnx.Module) else _eqx_dataset_bounds
    return bounds(model, x, jax.random.key(123))


@pytest.mark.parametrize("framework", ["nnx", "equinox"])
def test_example_trains_with_vaejax_elbo(framework):
    namespace, (elbo_0, _) = run_example(framework)
    losses = namespace["losses"]
    elbo_N, iwae_N = map(np.asarray, dataset_bounds(namespace["model"], namespace["x"]))
    assert len(losses) == 200 and np.all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0] - MIN_ELBO_GAIN, (losses[0], losses[-1])
    before, after = np.mean(elbo_0), np.mean(elbo_N)
    assert after > before + MIN_ELBO_GAIN, f"ELBO only rose from {before:.2f} to {after:.2f} nats"
    gap_N = iwae_N - elbo_N
    gap, stderr = np.mean(gap_N), np.std(gap_N) / np.sqrt(gap_N.shape[0])
    assert gap > MIN_IWAE_GAP + 3.0 * stderr, f"IWAE_{IWAE_K} - ELBO = {gap:.3f} +- {stderr:.3f} nats"


# -- gradients against a hand-written ELBO --------------------------------------------------------

def handwritten_elbo(key, x, encode, decode):
    """One-sample ELBO written out: the draw `vaejax.elbo(num_samples=1)` makes from `key`
    (eps ~ N(0, I) of shape (1, Z), as `diag_gaussian_sample` draws it), the Bernoulli
    log-likelihood and the closed-form KL(q || N(0, I))."""
    mean, logvar = encode(x)
    eps = jax.random.normal(key, (1, mean.shape[0]))[0]
    z = mean + jnp.exp(0.5 * logvar) * eps
    logits = decode(z)
    log_px_z = jnp.sum(x * logits - jax.nn.softplus(logits))
    kl = 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar)
    return log_px_z - kl


def _vaejax_elbo(key, x, encode, decode):
    return vaejax.elbo(key, x, encode, decode)[0]


def _summed_elbo(model, elbo_fn, keys, x_batch):
    return jnp.sum(jax.vmap(lambda k, x: elbo_fn(k, x, model.encode, model.decode))(keys, x_batch))


def _gradients(value_and_grad, model, key, x_batch):
    """(value, grads) of the ELBO summed over `x_batch`, vaejax's and the hand-written one,
    with the same key for each example. One compilation per framework."""
    keys = jax.random.split(key, x_batch.shape[0])
    return [value_and_grad(_summed_elbo)(model, elbo_fn, keys, x_batch)
            for elbo_fn in (_vaejax_elbo, handwritten_elbo)]


GRADIENTS = {"nnx": nnx.jit(functools.partial(_gradients, nnx.value_and_grad)),
             "equinox": eqx.filter_jit(functools.partial(_gradients, eqx.filter_value_and_grad))}


@pytest.mark.parametrize("framework", ["nnx", "equinox"])
def test_elbo_gradient_matches_handwritten_formula(framework):
    namespace, _ = run_example(framework, train=False)  # the example's VAE, untrained
    x_batch = namespace["x"][:8]
    (value, grads), (expected_value, expected_grads) = GRADIENTS[framework](
            namespace["model"], jax.random.key(3), x_batch)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    leaves, expected_leaves = jax.tree.leaves(grads), jax.tree.leaves(expected_grads)
    assert len(leaves) == len(expected_leaves) == 8  # 4 layers x (kernel or weight, bias)
    for leaf, expected in zip(leaves, expected_leaves):
        np.testing.assert_allclose(leaf, expected, rtol=1e-4, atol=1e-5)
    # The tolerance is meaningful: the same formula with other draws gives other gradients.
    _, (_, other_grads) = GRADIENTS[framework](namespace["model"], jax.random.key(4), x_batch)
    differences = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(leaves, jax.tree.leaves(other_grads))]
    assert max(differences) > 1e-2, differences


# -- the README section holds these examples ----------------------------------------------------

def _readme_code_blocks():
    """The ```python blocks of the README section, or None if README.md has no such section."""
    readme = REPO / "docs" / "concepts" / "losses.md"
    lines = readme.read_text().splitlines() if readme.exists() else []
    start = next((i for i, line in enumerate(lines) if README_HEADING.match(line)), None)
    if start is None:
        return None
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    blocks, block = [], None
    for line in lines[start + 1:]:
        if block is None and re.match(rf"^#{{1,{level}}} ", line):
            break                              # the next section at this level or above
        if block is None and line.strip() == "```python":
            block = []
        elif block is not None and line.strip() == "```":
            blocks.append("\n".join(block) + "\n")
            block = None
        elif block is not None:
            block.append(line)
    return blocks


def test_readme_interop_examples_match():
    blocks = _readme_code_blocks()
    if blocks is None:
        pytest.fail("docs/concepts/losses.md has no section \"Using vaejax's losses in your own model\"")
    assert blocks == [NNX_EXAMPLE, EQUINOX_EXAMPLE], (
            "the docs' NNX and Equinox examples must equal NNX_EXAMPLE and EQUINOX_EXAMPLE in "
            "tests/test_interop.py, which these tests run")
