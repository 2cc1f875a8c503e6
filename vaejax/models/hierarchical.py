"""VAEs with L stochastic layers: bottom-up inference (`model.kind = "hierarchical"`, and
`"two_layer"`, its L = 2 case at Burda et al.'s widths) and ladder inference
(`model.kind = "ladder"`, Sønderby et al. 2016). On flat (H*W*C,) vectors, z = {"z1": (Z1,),
..., "zL": (ZL,)}. Both have the same generative model:

    p(z) = p(zL) p(z_{L-1} | zL) ... p(z1 | z2)     p(zL) = N(0, I)
    p(x | z) = p(x | z1)                            z1 -MLP-> x: Bernoulli logits (or Gaussian)

every conditional p(z_i | z_{i+1}) a diagonal Gaussian N(mean, diag(exp(logvar))) from an MLP.
They differ in q(z|x):

    hierarchical   q(z1 | x) q(z2 | z1) ... q(zL | z_{L-1})            (Burda et al. 2015)
    ladder         q(zL | x) q(z_{L-1} | zL, x) ... q(z1 | z2, x)       (Sønderby et al. 2016)

The ladder's deterministic bottom-up pass d_i = MLP_i(d_{i-1}) (d_0 = x) gives each layer a
Gaussian likelihood term N(mu^_i, sigma^2_i) (a Dense head on d_i); q(zL | x) is the top one,
and below it, q(z_i | z_{i+1}, x) is the precision-weighted product of that term with the
generative p(z_i | z_{i+1}), whose parameters it shares:

    1/sigma_q^2 = 1/sigma^2_i + 1/sigma_p^2,   mu_q = sigma_q^2 (mu^_i/sigma^2_i + mu_p/sigma_p^2).

`hidden_sizes[i]` are the layers between z_i and z_{i+1} (z_0 = x), used both ways: q's
MLP from z_i (or the ladder's d_i) up, and p's, reversed, from z_{i+1} down.
Variances are softplus(raw) + 1e-5 as in the LVAE code (casperkaae/LVAE, run_models.py), or
exp(raw) with `variance="exp"` (Burda et al.'s, and `two_layer`'s). Where this differs from that
code: the bottom-up MLP reads d_{i-1} as the paper writes it, not mu^_{i-1} (the code's
`only_mu_up`); and the ladder shares the top-down path with the generative model,
as the paper describes (the code's `ladder_share_params`). Batch normalisation and KL warm-up
are training settings, not part of the model.

Both distributions over z are pytrees with distrax's interface, so every bound
(`vaejax.elbo`, `vaejax.iwae_bound`, ...) takes them unchanged; they have no closed-form KL,
so the ELBO's KL is the Monte Carlo log q(z|x) - log p(z) over its own draws.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaejax import distributions
from vaejax.models.base import (MODELS, activation_fn, check_sizes, likelihood_distribution,
                                likelihood_head, output_bias_init)
from vaejax.models.mlp import MLPDecoder
from vaejax.models import weight_norm
from vaejax.models.weight_norm import InitImages, hidden_dense


VARIANCES = ("exp", "softplus")
SOFTPLUS_FLOOR = 1e-5  # the LVAE code's lv_eps_z


def log_variance(variance: str, raw):
    """The log-variance a Gaussian head means by its raw output: "exp" reads it as the
    log-variance itself (var = exp(raw)); "softplus" as var = softplus(raw) + 1e-5, as the LVAE
    code does, which grows linearly, not exponentially, with large raw outputs."""
    if variance == "exp":
        return raw
    return jnp.log(jax.nn.softplus(raw) + SOFTPLUS_FLOOR)


class ConditionalGaussian(nn.Module):
    """a (..., A) -> Dense(h) for h in hidden_sizes -> Dense(2B) -> (mean, logvar), each (..., B).

    Unlike `MLPEncoder`, it keeps leading axes (the sample axes of a chain's draws).
    """

    hidden_sizes: Sequence[int]
    output_dim: int
    activation: str = "tanh"
    variance: str = "exp"  # how the head's second half becomes a variance (`VARIANCES`)
    normalization: str = "none"  # of the hidden layers (`weight_norm.NORMALIZATIONS`)

    @nn.compact
    def __call__(self, a):
        h = a
        for size in self.hidden_sizes:
            h = activation_fn(self.activation)(hidden_dense(self.normalization, size)(h))
        mean, raw = jnp.split(nn.Dense(2 * self.output_dim)(h), 2, axis=-1)
        return mean, log_variance(self.variance, raw)


class LadderBlock(nn.Module):
    """One step of the ladder's bottom-up pass: d (..., D) -> Dense(h) for h in hidden_sizes
    -> d' (the input itself when hidden_sizes is ()), and its head Dense(2Z)(d') ->
    (mu^, logvar^), each (..., Z). Returns (d', mu^, logvar^)."""

    hidden_sizes: Sequence[int]
    output_dim: int
    activation: str = "tanh"
    variance: str = "exp"
    normalization: str = "none"

    @nn.compact
    def __call__(self, d):
        for size in self.hidden_sizes:
            d = activation_fn(self.activation)(hidden_dense(self.normalization, size)(d))
        mean, raw = jnp.split(nn.Dense(2 * self.output_dim)(d), 2, axis=-1)
        return d, mean, log_variance(self.variance, raw)


def _conditional(module, params, a):
    return module.apply({"params": params}, a)


class _MarkovGaussian:
    """What a chain of diagonal Gaussians computes, once: variables a_0, ..., a_{n-1} named
    `names`, a_0 from `_initial()`, each later a_{j+1} ~ N(mean, diag(exp(logvar))) with
    (mean, logvar) = step_j(a_j) for the `(name, step_j)` pairs of `_steps()`. Draws are
    ancestral and reparameterized: `seed` splits into n keys; a_0 is
    `_initial().sample(seed=keys[0], sample_shape=S)`, and a_{j+1} = mean + exp(logvar / 2) *
    eps with eps = jax.random.normal(keys[j + 1], S + (A_{j+1},)). Log-densities in nats."""

    names: tuple[str, ...]

    def _initial(self):
        raise NotImplementedError

    def _steps(self):
        raise NotImplementedError

    def mean(self) -> dict[str, jax.Array]:
        """Ancestral through the means: a_0* = E[a_0], then a_{j+1}* = mean_j(a_j*).

        Only a_0* is a marginal mean; the others are not E[a_j] unless every mean_j is linear
        (Jensen): a point for figures and active units.
        """
        a = self._initial().mean()
        z = {self.names[0]: a}
        for name, step in self._steps():
            a, _ = step(a)
            z[name] = a
        return z

    def sample_and_log_prob(self, *, seed, sample_shape=()):
        """z as a dict of `S + (A_j,)` arrays, and its log-density of shape S (nats)."""
        keys = jax.random.split(seed, len(self.names))
        a, log_p = distributions.sample_and_log_prob(self._initial(), keys[0], sample_shape)
        z = {self.names[0]: a}
        for key, (name, step) in zip(keys[1:], self._steps()):
            mean, logvar = step(a)
            a = distributions.diag_gaussian_sample(key, mean, logvar)
            log_p = log_p + distributions.diag_gaussian_log_prob(a, mean, logvar)
            z[name] = a
        return z, log_p

    def sample(self, *, seed, sample_shape=()):
        """`sample_and_log_prob`'s z (the same draws for the same seed)."""
        return self.sample_and_log_prob(seed=seed, sample_shape=sample_shape)[0]

    def sample_to_depth(self, *, seed, depth: int, sample_shape=()) -> dict[str, jax.Array]:
        """a_0 .. a_depth drawn as `sample` draws them (the same seed, the same draws), every
        later variable at its conditional mean given the one before: what the first `depth`
        + 1 variables encode. depth = len(names) - 1 is `sample`."""
        keys = jax.random.split(seed, len(self.names))
        a = self._initial().sample(seed=keys[0], sample_shape=sample_shape)
        z = {self.names[0]: a}
        for j, (key, (name, step)) in enumerate(zip(keys[1:], self._steps())):
            mean, logvar = step(a)
            a = distributions.diag_gaussian_sample(key, mean, logvar) if j < depth else mean
            z[name] = a
        return z

    def log_prob_parts(self, value: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """{names[j]: log p(a_j | a_{j-1})}: one term per variable, each of shape S (nats)."""
        a = value[self.names[0]]
        parts = {self.names[0]: self._initial().log_prob(a)}
        for name, step in self._steps():
            mean, logvar = step(a)
            a = value[name]
            parts[name] = distributions.diag_gaussian_log_prob(a, mean, logvar)
        return parts

    def log_prob(self, value: Mapping[str, jax.Array]):
        """The sum of `log_prob_parts`: dict of `S + (A_j,)` -> S."""
        return sum(self.log_prob_parts(value).values())


@functools.partial(jax.tree_util.register_dataclass, data_fields=["first", "params"],
                   meta_fields=["conditionals", "names"])
@dataclasses.dataclass(frozen=True)
class GaussianChain(_MarkovGaussian):
    """p(a_0, ..., a_{n-1}) = p(a_0) prod_j N(a_{j+1}; mean_j(a_j), diag(exp(logvar_j(a_j))))
    over z = {names[j]: a_j}; draws and densities as `_MarkovGaussian` computes them.

    `first` is the distribution of a_0 (`DiagGaussian`, `StandardNormal`, or anything with
    distrax's interface over a vector); `conditionals[j]` is a Flax module with
    `apply({"params": params[j]}, a_j) -> (mean, logvar)` keeping leading axes
    (`ConditionalGaussian`). A pytree: `first` and `params` are its data, so
    `jax.tree.map(jax.lax.stop_gradient, chain)` has the same density with no gradient to
    the parameters, and chains pass through jit and vmap.
    """

    first: Any
    params: tuple
    conditionals: tuple[nn.Module, ...]
    names: tuple[str, ...]

    @property
    def event_shape(self) -> dict[str, tuple[int, ...]]:
        """{names[j]: (A_j,)}."""
        shapes = {self.names[0]: tuple(self.first.event_shape)}
        a = jax.ShapeDtypeStruct(shapes[self.names[0]], jnp.float32)
        for name, module, params in zip(self.names[1:], self.conditionals, self.params):
            mean, _ = jax.eval_shape(functools.partial(_conditional, module), params, a)
            shapes[name], a = tuple(mean.shape), mean
        return shapes

    def _initial(self):
        return self.first

    def _steps(self):
        return [(name, functools.partial(_conditional, module, params))
                for name, module, params in zip(self.names[1:], self.conditionals, self.params)]


def precision_weighted(mean_a, logvar_a, mean_b, logvar_b):
    """The product of N(mean_a, exp(logvar_a)) and N(mean_b, exp(logvar_b)), renormalized:
    (mean, logvar) with 1/var = 1/var_a + 1/var_b and mean = var (mean_a/var_a + mean_b/var_b),
    elementwise, computed in log space."""
    logvar = -jnp.logaddexp(-logvar_a, -logvar_b)
    mean = mean_a * jnp.exp(logvar - logvar_a) + mean_b * jnp.exp(logvar - logvar_b)
    return mean, logvar


def _merged(up_mean, up_logvar, module, params, above):
    """A ladder layer's q(z_i | z_{i+1}, x): the bottom-up term (Z,) and the generative
    p(z_i | above) (S + (Z,)), `precision_weighted`."""
    mean_p, logvar_p = _conditional(module, params, above)
    return precision_weighted(jnp.broadcast_to(up_mean, mean_p.shape),
                              jnp.broadcast_to(up_logvar, logvar_p.shape), mean_p, logvar_p)


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["top", "up_means", "up_logvars", "params"],
                   meta_fields=["conditionals", "names"])
@dataclasses.dataclass(frozen=True)
class LadderPosterior(_MarkovGaussian):
    """q(zL | x) prod_i q(z_i | z_{i+1}, x), top-down, with names = ("zL", ..., "z1").

    `top` is q(zL | x) (a `DiagGaussian`); for the layers below, in the order of `names[1:]`,
    `up_means[j]` and `up_logvars[j]` are the bottom-up term (mu^, logvar^) of that layer and
    `conditionals[j]` with `params[j]` the generative p(z_i | z_{i+1}) it is merged with
    (`precision_weighted`). Draws and densities as `_MarkovGaussian` computes them (one key
    per layer, top first); a pytree, so it passes through jit and vmap.
    """

    top: Any
    up_means: tuple
    up_logvars: tuple
    params: tuple
    conditionals: tuple[nn.Module, ...]
    names: tuple[str, ...]

    @property
    def event_shape(self) -> dict[str, tuple[int, ...]]:
        shapes = {self.names[0]: tuple(self.top.event_shape)}
        shapes |= {name: tuple(m.shape) for name, m in zip(self.names[1:], self.up_means)}
        return shapes

    def _initial(self):
        return self.top

    def _steps(self):
        return [(name, functools.partial(_merged, up_mean, up_logvar, module, params))
                for name, up_mean, up_logvar, module, params in
                zip(self.names[1:], self.up_means, self.up_logvars, self.conditionals, self.params)]


def _names(num_layers: int) -> tuple[str, ...]:
    return tuple(f"z{i}" for i in range(1, num_layers + 1))


@dataclasses.dataclass(frozen=True)
class HierarchicalVAE:
    """L stochastic layers, z = {"z1": (Z1,), ..., "zL": (ZL,)} (see the module docstring).

    `inference` is "bottom_up" or "ladder". `params` holds one Flax module's parameters per
    name: "p_x" (z1 -> x) and "p_z{i}" (z_{i+1} -> z_i, i < L), the generative model; and
    "q_z{i}" (z_{i-1} -> z_i, z_0 = x) for bottom-up inference, or "up_z{i}" (d_{i-1} -> d_i and
    its head) for the ladder. With L = 2 and bottom-up inference, Burda et al.'s two-layer
    model (`model.kind = "two_layer"`).
    """

    up: tuple[nn.Module, ...]    # q_z{i} (ConditionalGaussian) or up_z{i} (LadderBlock)
    down: tuple[nn.Module, ...]  # p_z{i}: z_{i+1} -> (mean, logvar) of z_i, i = 1..L-1
    p_x: nn.Module               # z1 -> the output `likelihood_head(likelihood_kind, ...)` gives
    data_shape: tuple[int, ...]
    latent_dims: tuple[int, ...]
    inference: str = "bottom_up"
    likelihood_kind: str = "bernoulli"
    # With weight normalisation: the images its data-dependent initialisation reads, (N,) +
    # data_shape in [0, 1] (`Batch`); None initialises without data (g = 1, b = 0).
    init_images: Any = None

    def init(self, key: jax.Array) -> dict[str, Any]:
        """Every module's parameters, each initialised on the inputs it sees in training: q's
        on the bottom-up pass of x, p's on draws of q(z|x). x is `init_images` (N,) +
        data_shape where the model has them (weight normalisation's data-dependent
        initialisation, `weight_norm.WNDense`), else one zero example (a Dense layer's
        initialisation reads only its input's shape). Parameters from `split(key, 2L)` (q's,
        then p's, p_x last), the draws from `fold_in(key, 1)`."""
        x = jnp.zeros(self.data_shape) if self.init_images is None else jnp.asarray(self.init_images.array)
        names, dims = _names(len(self.latent_dims)), self.latent_dims
        keys = jax.random.split(key, 2 * len(dims))
        draw_keys = iter(jax.random.split(jax.random.fold_in(key, 1), len(dims)))
        params, z = {}, {}
        if self.inference == "ladder":
            d, up = x, []
            for i, module in enumerate(self.up):
                variables = module.init(keys[i], d)
                params[f"up_{names[i]}"] = variables["params"]
                d, mean, logvar = module.apply(variables, d)
                up.append((mean, logvar))
            z[len(dims) - 1] = distributions.diag_gaussian_sample(next(draw_keys), *up[-1])
            for i in reversed(range(len(dims) - 1)):  # p_z{i+1} reads z_{i+2}, top-down
                variables = self.down[i].init(keys[len(dims) + i], z[i + 1])
                params[f"p_{names[i]}"] = variables["params"]
                mean, logvar = precision_weighted(*up[i], *self.down[i].apply(variables, z[i + 1]))
                z[i] = distributions.diag_gaussian_sample(next(draw_keys), mean, logvar)
        else:
            a = x
            for i, module in enumerate(self.up):
                variables = module.init(keys[i], a)
                params[f"q_{names[i]}"] = variables["params"]
                a = z[i] = distributions.diag_gaussian_sample(next(draw_keys), *module.apply(variables, a))
            for i, module in enumerate(self.down):
                params[f"p_{names[i]}"] = module.init(keys[len(dims) + i], z[i + 1])["params"]
        params["p_x"] = self.p_x.init(keys[-1], z[0])["params"]
        return params

    def _check_x(self, x):
        if x.shape != self.data_shape:
            raise ValueError(
                f"posterior takes one example of shape {self.data_shape}, got {x.shape}; "
                "vmap over a batch (vaejax.batch_elbo does).")

    def posterior(self, params, x):
        """x: `data_shape` -> q(z|x) over {"z1": (Z1,), ..., "zL": (ZL,)}: a `GaussianChain`
        bottom-up, or a `LadderPosterior` top-down."""
        self._check_x(x)
        names = _names(len(self.latent_dims))
        if self.inference == "ladder":
            d, means, logvars = x, [], []
            for name, module in zip(names, self.up):
                d, mean, logvar = module.apply({"params": params[f"up_{name}"]}, d)
                means.append(mean)
                logvars.append(logvar)
            top = distributions.DiagGaussian(means[-1], logvars[-1])
            below = names[-2::-1]  # z_{L-1}, ..., z1
            return LadderPosterior(
                top, tuple(means[-2::-1]), tuple(logvars[-2::-1]),
                tuple(params[f"p_{n}"] for n in below), tuple(self.down[::-1]),
                (names[-1],) + below)
        mean, logvar = self.up[0].apply({"params": params["q_z1"]}, x)
        return GaussianChain(distributions.DiagGaussian(mean, logvar),
                             tuple(params[f"q_{n}"] for n in names[1:]), tuple(self.up[1:]), names)

    def prior(self, params) -> GaussianChain:
        """p(zL) p(z_{L-1} | zL) ... p(z1 | z2) with p(zL) = N(0, I), a chain from zL down."""
        names = _names(len(self.latent_dims))
        below = names[-2::-1]
        return GaussianChain(distributions.StandardNormal((self.latent_dims[-1],)),
                             tuple(params[f"p_{n}"] for n in below), tuple(self.down[::-1]),
                             (names[-1],) + below)

    def likelihood(self, params, z):
        """z: {"z1": (Z1,), ...} -> p(x|z1): Bernoulli(logits) or DiagGaussian over x."""
        z1_shape = (self.latent_dims[0],)
        if not isinstance(z, Mapping) or "z1" not in z or jnp.shape(z["z1"]) != z1_shape:
            got = ({k: jnp.shape(v) for k, v in z.items()} if isinstance(z, Mapping)
                   else f"{type(z).__name__} of shape {jnp.shape(z)}")
            raise ValueError(f"likelihood takes one z, a dict with 'z1' of shape {z1_shape} "
                             f"(and the layers above), got {got}.")
        return likelihood_distribution(self.likelihood_kind,
                                       self.p_x.apply({"params": params["p_x"]}, z["z1"]))


INFERENCE = ("bottom_up", "ladder")


def _build(kind: str, inference: str, *, image_shape, latent_dims, hidden_sizes, activation,
           variance, likelihood, gaussian_logvar, output_bias, mean_image,
           normalization="none", init_images=None) -> HierarchicalVAE:
    activation_fn(activation)  # validate early
    check_sizes(latent_dims=latent_dims, hidden_sizes=hidden_sizes)
    latent_dims = tuple(int(d) for d in latent_dims)
    hidden_sizes = tuple(tuple(int(h) for h in layer) for layer in hidden_sizes)
    if len(latent_dims) != len(hidden_sizes) or len(latent_dims) < 2:
        raise ValueError(
            f"model.kind={kind!r}: latent_dims and hidden_sizes need one entry per stochastic "
            f"layer (at least 2), the same number of each; got latent_dims={latent_dims} and "
            f"hidden_sizes={hidden_sizes}. hidden_sizes[i] are the layers between z_i and "
            "z_{i+1} (z_0 = x), e.g. ((512, 512), (256, 256)).")
    if variance not in VARIANCES:
        raise ValueError(f"Unknown model.variance {variance!r}; choose one of {VARIANCES}.")
    weight_norm.check(normalization)
    flat = (math.prod(int(d) for d in image_shape),)
    block = LadderBlock if inference == "ladder" else ConditionalGaussian
    up = tuple(block(h, z, activation, variance, normalization)
               for h, z in zip(hidden_sizes, latent_dims))
    down = tuple(ConditionalGaussian(tuple(reversed(hidden_sizes[i + 1])), latent_dims[i], activation,
                                     variance, normalization) for i in range(len(latent_dims) - 1))
    p_x = likelihood_head(likelihood, MLPDecoder(tuple(reversed(hidden_sizes[0])), flat, activation,
                          output_bias_init(output_bias, likelihood, mean_image, flat), normalization),
                          flat, gaussian_logvar)
    images = None
    if normalization == "weight_norm" and init_images is not None:
        array = init_images() if callable(init_images) else init_images
        images = InitImages(np.asarray(array, np.float32).reshape((-1,) + flat))
    return HierarchicalVAE(up, down, p_x, flat, latent_dims, inference, likelihood, images)


# Sønderby et al. (2016)'s MNIST model: 5 stochastic layers, two-layer MLPs between them.
SONDERBY_LATENTS = (64, 32, 16, 8, 4)
SONDERBY_HIDDEN = ((512, 512), (256, 256), (128, 128), (64, 64), (32, 32))


@MODELS.register("hierarchical")
def hierarchical_vae(*, image_shape: Sequence[int], latent_dims: Sequence[int] = SONDERBY_LATENTS,
                     hidden_sizes: Sequence[Sequence[int]] = SONDERBY_HIDDEN,
                     activation: str = "tanh", variance: str = "softplus",
                     likelihood: str = "bernoulli", gaussian_logvar: str | float = "learned",
                     output_bias: str = "zeros", normalization: str = "none", mean_image=None,
                     init_images=None) -> HierarchicalVAE:
    """L stochastic layers with bottom-up inference q(z1|x) q(z2|z1) ... (Burda et al. 2015);
    the defaults are Sønderby et al.'s MNIST widths. `latent_dims[i]` and `hidden_sizes[i]`
    (the layers between z_i and z_{i+1}, mirrored in p) per layer; `variance` how every
    Gaussian's variance is computed (`log_variance`: "softplus" as the LVAE code, or "exp");
    `normalization` of every hidden layer ("none", or "weight_norm": `vaejax.models.weight_norm`,
    initialised on `init_images`, the first training images); `likelihood`, `gaussian_logvar`
    and `output_bias` as for the MLP VAE."""
    return _build("hierarchical", "bottom_up", image_shape=image_shape, latent_dims=latent_dims,
                  hidden_sizes=hidden_sizes, activation=activation, variance=variance,
                  likelihood=likelihood, gaussian_logvar=gaussian_logvar, output_bias=output_bias,
                  mean_image=mean_image, normalization=normalization, init_images=init_images)


@MODELS.register("ladder")
def ladder_vae(*, image_shape: Sequence[int], latent_dims: Sequence[int] = SONDERBY_LATENTS,
               hidden_sizes: Sequence[Sequence[int]] = SONDERBY_HIDDEN, activation: str = "tanh",
               variance: str = "softplus", likelihood: str = "bernoulli",
               gaussian_logvar: str | float = "learned", output_bias: str = "zeros",
               normalization: str = "none", mean_image=None, init_images=None) -> HierarchicalVAE:
    """The Ladder VAE (Sønderby et al. 2016): the generative model of `hierarchical` with
    top-down inference merged with a deterministic bottom-up pass by precision weighting.
    `hidden_sizes[i]` are the layers of the bottom-up block from d_i to d_{i+1} (d_0 = x) and,
    reversed, of p(z_i | z_{i+1}); `variance` and `normalization` as for `hierarchical`. The
    defaults are the paper's MNIST model."""
    return _build("ladder", "ladder", image_shape=image_shape, latent_dims=latent_dims,
                  hidden_sizes=hidden_sizes, activation=activation, variance=variance,
                  likelihood=likelihood, gaussian_logvar=gaussian_logvar, output_bias=output_bias,
                  mean_image=mean_image, normalization=normalization, init_images=init_images)


@MODELS.register("two_layer")
def two_layer_vae(*, image_shape: Sequence[int], latent_dims: Sequence[int] = (100, 50),
                  hidden_sizes: Sequence[Sequence[int]] = ((200, 200), (100, 100)),
                  activation: str = "tanh", likelihood: str = "bernoulli",
                  gaussian_logvar: str | float = "learned", output_bias: str = "zeros",
                  mean_image=None) -> HierarchicalVAE:
    """Burda et al.'s two-stochastic-layer VAE: `hierarchical` with L = 2 at their widths
    (yburda/iwae, experiments.py: 521,084 parameters on MNIST)."""
    if len(tuple(latent_dims)) != 2 or len(tuple(hidden_sizes)) != 2:
        raise ValueError(f"two_layer: latent_dims and hidden_sizes need one entry per stochastic "
                         f"layer (2), got {tuple(latent_dims)} and {tuple(hidden_sizes)}; for "
                         "more layers use model.kind='hierarchical'.")
    return _build("two_layer", "bottom_up", image_shape=image_shape, latent_dims=latent_dims,
                  hidden_sizes=hidden_sizes, activation=activation, variance="exp",
                  likelihood=likelihood,
                  gaussian_logvar=gaussian_logvar, output_bias=output_bias, mean_image=mean_image)
