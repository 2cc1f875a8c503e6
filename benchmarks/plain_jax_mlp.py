"""A plain, hand-written JAX VAE (784-400-20, ReLU, Bernoulli, Adam 1e-3, batch 128): the
reference vaejax's trainer is measured against. No vaejax code: batched matrices, the
dynamic binarization and the whole epoch in one jitted lax.scan, written the obvious way.

    python benchmarks/plain_jax_mlp.py [--epochs 3]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax


def init(key, sizes=(784, 400, 20)):
    d, h, z = sizes
    k = jax.random.split(key, 4)
    glorot = jax.nn.initializers.lecun_normal()
    return {
        "e1": (glorot(k[0], (d, h)), jnp.zeros(h)), "e2": (glorot(k[1], (h, 2 * z)), jnp.zeros(2 * z)),
        "d1": (glorot(k[2], (z, h)), jnp.zeros(h)), "d2": (glorot(k[3], (h, d)), jnp.zeros(d)),
    }


def neg_elbo(params, key, x):  # x: (B, 784) in {0, 1}
    h = jax.nn.relu(x @ params["e1"][0] + params["e1"][1])
    mean, logvar = jnp.split(h @ params["e2"][0] + params["e2"][1], 2, axis=-1)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
    h = jax.nn.relu(z @ params["d1"][0] + params["d1"][1])
    logits = h @ params["d2"][0] + params["d2"][1]
    rec = jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)
    kl = 0.5 * jnp.sum(jnp.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)
    return jnp.mean(kl - rec)


def make_epoch(tx, batch_size):
    @jax.jit
    def epoch(params, opt_state, images_u8, key):
        n = images_u8.shape[0] // batch_size
        perm_key, step_key = jax.random.split(key)
        order = jax.random.permutation(perm_key, images_u8.shape[0])[: n * batch_size]

        def step(carry, idx):
            params, opt_state, i = carry
            k_bin, k_z = jax.random.split(jax.random.fold_in(step_key, i))
            p = images_u8[idx].reshape(batch_size, -1).astype(jnp.float32) / 255.0
            x = jax.random.bernoulli(k_bin, p).astype(jnp.float32)
            loss, grads = jax.value_and_grad(neg_elbo)(params, k_z, x)
            updates, opt_state = tx.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state, i + 1), loss

        (params, opt_state, _), losses = jax.lax.scan(step, (params, opt_state, 0),
                                                      order.reshape(n, batch_size))
        return params, opt_state, losses.mean()

    return epoch


def trainer(images_u8, batch_size=128, seed=0):
    """A compiled plain training loop: `run_epoch() -> (seconds, mean loss)`, and `params()`."""
    tx = optax.adam(1e-3)
    state = {"params": init(jax.random.key(seed))}
    state["opt"] = tx.init(state["params"])
    images = jax.device_put(images_u8)
    key = jax.random.key(seed + 1)
    compiled = make_epoch(tx, batch_size).lower(state["params"], state["opt"], images, key).compile()
    epochs_done = [0]

    def run_epoch():
        start = time.perf_counter()
        state["params"], state["opt"], loss = compiled(
            state["params"], state["opt"], images, jax.random.fold_in(key, epochs_done[0]))
        loss = float(loss)
        epochs_done[0] += 1
        return time.perf_counter() - start, loss

    return run_epoch, lambda: state["params"]


def time_epochs(images_u8, epochs=3, batch_size=128, seed=0):
    """Per-epoch seconds (compile excluded) and mean losses of the plain script."""
    run_epoch, params = trainer(images_u8, batch_size, seed)
    times, losses = zip(*(run_epoch() for _ in range(epochs)))
    return list(times), list(losses), params()


if __name__ == "__main__":
    from vaejax import data  # only to find the data; the training above uses no vaejax code

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    ds = data.load("fashion_mnist")
    (train_x, _), _ = data.split_validation(ds.train_images, ds.train_labels)
    times, losses, _ = time_epochs(np.asarray(train_x), args.epochs)
    for e, (t, l) in enumerate(zip(times, losses)):
        print(f"epoch {e + 1}: {t:.3f} s, train -ELBO {l:.2f}")
