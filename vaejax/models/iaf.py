"""A VAE whose posterior is an Inverse Autoregressive Flow (`model.kind = "iaf"`).

Kingma et al. (2016), "Improved Variational Inference with Inverse Autoregressive Flow".
The encoder gives a diagonal Gaussian and a context vector h; T autoregressive steps then
reshape the Gaussian draw:

    z_0 = loc + exp(logvar / 2) * eps,                     eps ~ N(0, I)    (Z,)
    m_t, s_t = MADE_t(z_{t-1}, h)                          m_td, s_td depend on z_{t-1,<d} only
    sigma_t = sigmoid(s_t + forget_bias)
    z_t = sigma_t * z_{t-1} + (1 - sigma_t) * m_t           (the numerically stable update)

with the order of the dimensions reversed before every step after the first. Each step's
Jacobian is triangular with diagonal sigma_t, so

    log q(z_T | x) = log N(eps; 0, I) - sum_d logvar_d / 2 - sum_t sum_d log sigma_td   (nats).

Sampling with its log-density (what the bounds use) is one pass; the density of any other z
needs the inverse, Z sequential MADE passes per step (`IAFPosterior.log_prob`; the "stl" and
"dreg" gradient estimators call it). There is no closed-form KL, so `vaejax.elbo` estimates it
by Monte Carlo and refuses free bits.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaejax import distributions
from vaejax.models.base import MODELS, EncoderDecoderVAE, activation_fn, check_sizes
from vaejax.models.mlp import MLPDecoder


class MaskedDense(nn.Module):
    """Dense layer whose kernel is masked by MADE degrees (Germain et al. 2015).

    Input unit i (degree `in_degrees[i]`) feeds output unit j (degree `out_degrees[j]`) iff
    out_degrees[j] >= in_degrees[i], or > with `strict` (the output layer). Parameters are
    `nn.Dense`'s: "kernel" (len(in_degrees), len(out_degrees)) and "bias". `(..., I) -> (..., J)`.
    """

    in_degrees: tuple[int, ...]
    out_degrees: tuple[int, ...]
    strict: bool = False
    kernel_init: Any = nn.initializers.lecun_normal()

    def mask(self) -> np.ndarray:
        """(I, J) of 0/1: which inputs each output unit may read."""
        i, j = np.asarray(self.in_degrees)[:, None], np.asarray(self.out_degrees)[None, :]
        return ((j > i) if self.strict else (j >= i)).astype(np.float32)

    @nn.compact
    def __call__(self, x):
        shape = (len(self.in_degrees), len(self.out_degrees))
        kernel = self.param("kernel", self.kernel_init, shape)
        bias = self.param("bias", nn.initializers.zeros, shape[1:])
        y = x @ (kernel * jnp.asarray(self.mask(), kernel.dtype))
        return y + bias.reshape((1,) * (y.ndim - 1) + shape[1:])


def made_degrees(latent_dim: int, hidden_sizes: Sequence[int]) -> list[tuple[int, ...]]:
    """MADE degrees of every layer: inputs z_d have degree d (1..D), hidden unit k of a layer
    degree k mod D (0..D-1, cycling), outputs (m, s) degrees (1..D, 1..D).

    A hidden unit of degree k reads z_1..z_k (degree 0: only the context), and output d reads
    hidden units of degree < d, so m_d and s_d depend on z_{<d} (and all of h).
    """
    inputs = tuple(range(1, latent_dim + 1))
    hidden = [tuple(k % latent_dim for k in range(size)) for size in hidden_sizes]
    return [inputs, *hidden, inputs + inputs]


class MADE(nn.Module):
    """Autoregressive network (z (Z,), h (C,) or None) -> (m, s), each (Z,): m_d and s_d
    depend on z_{<d} and on h.

    The context h enters the first layer through an unmasked `nn.Dense` without bias (named
    "context"), so every unit of the first layer reads all of h; hidden layers are
    "hidden_{i}", the output layer "output".
    """

    latent_dim: int
    hidden_sizes: tuple[int, ...]
    activation: str = "relu"

    @nn.compact
    def __call__(self, z, h=None):
        degrees = made_degrees(self.latent_dim, self.hidden_sizes)
        out = z
        for i, (d_in, d_out) in enumerate(zip(degrees[:-1], degrees[1:])):
            last = i == len(degrees) - 2
            name = "output" if last else f"hidden_{i}"
            out = MaskedDense(d_in, d_out, strict=last, name=name)(out)
            if i == 0 and h is not None:
                out = out + nn.Dense(len(d_out), use_bias=False, name="context")(h)
            if not last:
                out = activation_fn(self.activation)(out)
        m, s = jnp.split(out, 2, axis=-1)
        return m, s


def _per_sample(fn, value, latent_dim):
    """fn over one (Z,) vector, applied to `value` of shape `sample_shape + (Z,)`; fn returns
    a tuple of arrays `(Z,)` or `()`, each given back with `sample_shape` in front."""
    if jnp.shape(value)[-1:] != (latent_dim,):
        raise ValueError(f"expected a value of shape (..., {latent_dim}), got {jnp.shape(value)}")
    if jnp.ndim(value) == 1:
        return fn(value)
    sample_shape = jnp.shape(value)[:-1]
    outputs = jax.vmap(fn)(jnp.reshape(value, (-1, latent_dim)))
    return tuple(jnp.reshape(o, sample_shape + o.shape[1:]) for o in outputs)


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["loc", "logvar", "context", "flow_params"],
                   meta_fields=["made", "forget_bias"])
@dataclasses.dataclass(frozen=True)
class IAFPosterior:
    """q(z|x): N(loc, diag(exp(logvar))) over (Z,) pushed through T IAF steps (module docstring).

    Fields: `loc`, `logvar` (Z,); `context` h (C,) or None; `flow_params` {"step_t": params of
    `made`} for t < T (each step its own parameters); `made` the MADE module; `forget_bias`
    added to s before the sigmoid, so that sigma starts near sigmoid(forget_bias) (0.73 for
    +1, 0.88 for +2; Kingma et al. suggest +1 or +2) and z_t starts as mostly z_{t-1}.

    `sample_and_log_prob` (one forward pass) is what the bounds use; `log_prob` of any other z
    inverts the flow, T * Z sequential MADE passes, exact up to float rounding. There is no
    `kl_divergence`: the ELBO's KL is a Monte Carlo estimate, and free bits are refused.
    """

    loc: jax.Array
    logvar: jax.Array
    context: jax.Array | None
    flow_params: dict[str, Any]
    made: MADE
    forget_bias: float = 1.0

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(jnp.shape(self.loc))

    @property
    def num_steps(self) -> int:
        return len(self.flow_params)

    @property
    def latent_dim(self) -> int:
        return self.event_shape[-1]

    # -- one autoregressive step, on one (Z,) vector -------------------------------------------

    def _gate(self, t, u):
        m, s = self.made.apply({"params": self.flow_params[f"step_{t}"]}, u, self.context)
        s = s + self.forget_bias
        return m, jax.nn.sigmoid(s), jax.nn.log_sigmoid(s)

    def step(self, t: int, u):
        """Step t on u (Z,), in the step's own (already permuted) order: (y, log sigma), each
        (Z,). y = sigma * u + (1 - sigma) * m with m, sigma functions of u_{<d}."""
        m, sigma, log_sigma = self._gate(t, u)
        return sigma * u + (1.0 - sigma) * m, log_sigma

    def inverse_step(self, t: int, y):
        """The u with step(t, u)[0] == y, and log sigma at u: (u, log sigma), each (Z,).

        u_d = (y_d - (1 - sigma_d) m_d) / sigma_d with m_d, sigma_d functions of u_{<d}: after
        pass k of Z (a `jax.lax.fori_loop`) u_{<=k} is exact, and the last pass's sigma is
        that of the exact u_{<Z}.
        """
        def body(_, carry):
            u, _ = carry
            m, sigma, log_sigma = self._gate(t, u)
            return (y - (1.0 - sigma) * m) / sigma, log_sigma

        return jax.lax.fori_loop(0, self.latent_dim, body, (y, jnp.zeros_like(y)))

    # -- the bijection eps -> z ------------------------------------------------------------------

    def forward(self, eps):
        """eps `(..., Z)` (base noise) -> (z `(..., Z)`, log|det dz/deps| `(...)` in nats), where
        log|det| = sum logvar / 2 + sum_t sum_d log sigma_td."""
        def one(eps_Z):
            z = self.loc + jnp.exp(0.5 * self.logvar) * eps_Z
            log_det = 0.5 * jnp.sum(self.logvar)
            for t in range(self.num_steps):
                if t > 0:
                    z = z[::-1]
                z, log_sigma = self.step(t, z)
                log_det = log_det + jnp.sum(log_sigma)
            return z, log_det

        return _per_sample(one, eps, self.latent_dim)

    def inverse(self, z):
        """z `(..., Z)` -> (eps, log|det dz/deps| at eps), the inverse of `forward`."""
        def one(z_Z):
            log_det = 0.5 * jnp.sum(self.logvar)
            for t in reversed(range(self.num_steps)):
                z_Z, log_sigma = self.inverse_step(t, z_Z)
                log_det = log_det + jnp.sum(log_sigma)
                if t > 0:
                    z_Z = z_Z[::-1]
            return (z_Z - self.loc) * jnp.exp(-0.5 * self.logvar), log_det

        return _per_sample(one, z, self.latent_dim)

    # -- distrax's interface -------------------------------------------------------------------

    def sample_and_log_prob(self, *, seed, sample_shape=()):
        """Reparameterized z `sample_shape + (Z,)` and log q(z|x) `sample_shape`, in nats, from
        eps = jax.random.normal(seed, sample_shape + (Z,)): one forward pass, no inverse."""
        sample_shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)
        shape = sample_shape + self.event_shape
        eps = jax.random.normal(seed, shape, jnp.result_type(self.loc))
        z, log_det = self.forward(eps)
        return z, distributions.standard_normal_log_prob(eps) - log_det

    def sample(self, *, seed, sample_shape=()):
        return self.sample_and_log_prob(seed=seed, sample_shape=sample_shape)[0]

    def log_prob(self, value):
        """log q(value|x) in nats, `sample_shape + (Z,) -> sample_shape`, through the inverse
        (T * Z sequential MADE passes per value): log N(eps; 0, I) - log|det dz/deps|."""
        eps, log_det = self.inverse(value)
        return distributions.standard_normal_log_prob(eps) - log_det

    def mean(self):
        """NOT the mean of q, which has no closed form: the flow applied to the base mean
        `loc` (the image of the base distribution's mode), shape (Z,). vaejax's evaluation
        uses `mean()` only for active units and figures."""
        return self.forward(jnp.zeros_like(self.loc))[0]


class IAFEncoder(nn.Module):
    """x -> flatten -> Dense(h) for h in hidden_sizes -> Dense(2Z + C) -> (mean, logvar, context);
    context (C,) is None when context_dim is 0."""

    hidden_sizes: Sequence[int]
    latent_dim: int
    context_dim: int = 0
    activation: str = "relu"

    @nn.compact
    def __call__(self, x):
        out = x.reshape(-1)
        for size in self.hidden_sizes:
            out = activation_fn(self.activation)(nn.Dense(size)(out))
        out = nn.Dense(2 * self.latent_dim + self.context_dim)(out)
        mean, logvar = out[:self.latent_dim], out[self.latent_dim:2 * self.latent_dim]
        return mean, logvar, (out[2 * self.latent_dim:] if self.context_dim else None)


@dataclasses.dataclass(frozen=True)
class IAFVAE(EncoderDecoderVAE):
    """`EncoderDecoderVAE` (prior N(0, I), likelihood from the decoder) with an IAF posterior:
    the encoder (an `IAFEncoder`) gives (mean, logvar, context), then `flow_steps` steps of
    the MADE `flow`. `params` is {"encoder": ..., "flow": {"step_t": ...}, "decoder": ...}."""

    flow: MADE | None = None
    flow_steps: int = 2
    context_dim: int = 0
    forget_bias: float = 1.0

    def init(self, key: jax.Array) -> dict[str, Any]:
        base_key, flow_key = jax.random.split(key)
        params = super().init(base_key)
        z = jnp.zeros((self.latent_dim,))
        h = jnp.zeros((self.context_dim,)) if self.context_dim else None
        step_keys = jax.random.split(flow_key, self.flow_steps)
        params["flow"] = {f"step_{t}": self.flow.init(step_keys[t], z, h)["params"]
                          for t in range(self.flow_steps)}
        return params

    def posterior(self, params, x) -> IAFPosterior:
        """x: `data_shape` -> q(z|x), an `IAFPosterior` over (Z,)."""
        if x.shape != self.data_shape:
            raise ValueError(
                f"posterior takes one example of shape {self.data_shape}, got {x.shape}; "
                "vmap over a batch (vaejax.batch_elbo does).")
        mean, logvar, context = self.encoder.apply({"params": params["encoder"]}, x)
        return IAFPosterior(mean, logvar, context, params["flow"], self.flow, self.forget_bias)


@MODELS.register("iaf")
def iaf_vae(*, image_shape: Sequence[int], latent_dim: int, hidden_sizes: Sequence[int] = (200, 200),
            activation: str = "tanh", flow_steps: int = 2, flow_hidden_sizes: Sequence[int] = (320, 320),
            context_dim: int = 50, forget_bias: float = 1.0, likelihood: str = "bernoulli",
            gaussian_logvar: str | float = "learned") -> IAFVAE:
    """The MLP VAE of `mlp_vae` (flat (H*W*C,) inputs, decoder mirroring `hidden_sizes`) with an
    IAF posterior: `flow_steps` MADEs of `flow_hidden_sizes` with the same activation, each
    reading a context of `context_dim` (0: none) from the encoder. With 0 steps q is the
    encoder's diagonal Gaussian, though still without a closed-form KL (an `IAFPosterior`)."""
    activation_fn(activation)  # validate early
    check_sizes(latent_dim=latent_dim, hidden_sizes=hidden_sizes, flow_hidden_sizes=flow_hidden_sizes)
    check_sizes(0, flow_steps=flow_steps, context_dim=context_dim)
    flat = (math.prod(int(d) for d in image_shape),)
    vae = IAFVAE.make(
        IAFEncoder(tuple(hidden_sizes), latent_dim, context_dim, activation),
        MLPDecoder(tuple(reversed(tuple(hidden_sizes))), flat, activation),
        data_shape=flat, latent_dim=latent_dim, likelihood=likelihood,
        gaussian_logvar=gaussian_logvar)
    return dataclasses.replace(vae, flow=MADE(latent_dim, tuple(flow_hidden_sizes), activation),
                               flow_steps=flow_steps, context_dim=context_dim,
                               forget_bias=float(forget_bias))
