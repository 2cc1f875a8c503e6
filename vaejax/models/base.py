"""The model protocol, the registry that `config.model.kind` names, and what built-ins share.

A model is a hashable object (a frozen dataclass, say) with four pure functions of ONE
example or latent, and the shape of the x it reads:

    init(key) -> params
    posterior(params, x) -> q(z|x), a distribution over z      # x of shape `data_shape`
    prior(params) -> p(z), a distribution over z
    likelihood(params, z) -> p(x|z), a distribution over x      # one latent
    data_shape: tuple[int, ...]   (optional: the image shape (H, W, C) when absent)

Optional parts, each used by vaejax's core for any model that has it (no branch on the kind):

    conditioning = "label"          the model reads each example's label: the data layer hands
                                    it as the last argument, posterior(params, x, y),
                                    prior(params, y), likelihood(params, z, y) (y an int32
                                    scalar), in training, evaluation (log p(x|y)) and figures
    num_classes: int                with conditioning: the figures' grid of samples per class
    learned_images(params)          {name: (N,) + data_shape in [0, 1]}: images the model learns
                                    (the VampPrior's pseudo-inputs), drawn as <name>.png
    a latent z that is a pytree     e.g. {"z1": (100,), "z2": (50,)} (two stochastic layers):
                                    the bounds, evaluation (active units per variable) and
                                    figures (z flattened) take it as it is

"Distribution" is distrax's interface (`sample_and_log_prob(seed=, sample_shape=)`,
`log_prob`, and `mean()` for evaluation and figures): vaejax's own (`vaejax.distributions`,
with closed-form KLs), distrax's or TFP-on-JAX's. Training, evaluation, figures, `reproduce`
and sweeps use nothing else, so a model written in one file plugs in with
`config.model.kind = "my_file:MyModel"`: the attribute is called with `image_shape=` (the
image shape (H, W, C)) and the other `config.model` fields as keyword arguments, and returns
a model (whose `data_shape`, if it has one, is the shape of the x it reads).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaejax import distributions, registry

MODELS = registry.Registry("model", "model.kind")


def data_shape(model, image_shape) -> tuple[int, ...]:
    """The shape of one x as `model` reads it: its `data_shape`, else the image shape."""
    return tuple(int(d) for d in getattr(model, "data_shape", image_shape))


def build(model_config, image_shape, *, search_path: str | None = None, mean_image=None,
          init_images=None):
    """The model `model_config.kind` names, called with `image_shape=` (the image shape
    (H, W, C)) and the other fields of `model_config` (a ConfigDict or dict) as keyword
    arguments. (The model it returns may have a `data_shape`: the shape of the x it reads.)

    A factory whose signature names `mean_image` also gets it: the mean training image
    (`image_shape`, intensities / 255), for a data-dependent initialization; `mean_image`
    may be a function returning it, called only then. A factory that names `init_images` gets
    `init_images` as it is: the first training images, (N, H, W, C) intensities / 255, or a
    function returning them, for a data-dependent initialization (weight normalisation's).

    A factory that still takes `data_shape` (the name factories were once called with)
    and not `image_shape` is refused with a ValueError that says to rename it.
    """
    fields = dict(model_config)
    kind = fields.pop("kind")
    factory = MODELS.get(kind, search_path=search_path)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    parameters = inspect.signature(factory).parameters
    if "data_shape" in parameters and "image_shape" not in parameters:
        raise ValueError(
            f"model.kind={kind!r}: {getattr(factory, '__name__', factory)} takes `data_shape`, "
            "but model factories are now called with `image_shape=` (the image shape, "
            "(H, W, C)): rename its `data_shape` parameter to `image_shape`. (A model's "
            "`data_shape` attribute, the shape of the x it reads, keeps its name.)")
    extra = {}
    if "mean_image" in parameters:  # computed only when asked for
        extra["mean_image"] = mean_image() if callable(mean_image) else mean_image
    if "init_images" in parameters:  # passed on as it is: read only by a model that needs it
        extra["init_images"] = init_images
    return registry.call_with_fields(factory, fields, what=f"model.kind={kind!r}",
                                     image_shape=tuple(int(d) for d in image_shape), **extra)


OUTPUT_BIASES = ("zeros", "mean_logit")


def output_bias_init(output_bias: str, likelihood: str, mean_image, flat_shape):
    """The initializer of a Bernoulli decoder's output bias (the logits at z's zero input).

    "zeros": Flax's default. "mean_logit": logit(clip(mean_image, 0.001, 0.999)), so that the
    untrained decoder already predicts each pixel's training-set mean, as in Burda et al.'s
    code (yburda/iwae, datasets.py `get_train_bias_np`). `mean_image` is the mean training
    image, intensities / 255, of any shape with `prod(flat_shape)` entries.
    """
    if output_bias not in OUTPUT_BIASES:
        raise ValueError(f"Unknown model.output_bias {output_bias!r}; choose one of {OUTPUT_BIASES}.")
    if output_bias == "zeros":
        return nn.initializers.zeros_init()
    if likelihood != "bernoulli":
        raise ValueError(f"model.output_bias='mean_logit' sets Bernoulli logits; with "
                         f"model.likelihood={likelihood!r} use output_bias='zeros'.")
    if mean_image is None:
        raise ValueError("model.output_bias='mean_logit' needs the mean training image: build the "
                         "model through vaejax.program.Program.build (or pass mean_image=).")
    mean = np.clip(np.asarray(mean_image, np.float64).reshape(flat_shape), 0.001, 0.999)
    logits = jnp.asarray(np.log(mean) - np.log1p(-mean), jnp.float32)

    def init(key, shape, dtype=jnp.float32):
        del key
        if tuple(shape) != logits.shape:
            raise ValueError(f"output bias of shape {tuple(shape)}, mean image of {logits.shape}")
        return logits.astype(dtype)

    return init


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "softplus": nn.softplus,
    "silu": nn.silu,
    "leaky_relu": nn.leaky_relu,  # slope 0.01 below zero, as Lasagne's leaky_rectify
}


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


class GaussianHead(nn.Module):
    """Wraps a decoder: z -> (mean, logvar), logvar a learned vector shaped like x, or fixed."""

    decoder: nn.Module
    output_shape: tuple[int, ...]
    fixed_logvar: float | None = None

    @nn.compact
    def __call__(self, z):
        mean = self.decoder(z)
        if self.fixed_logvar is not None:
            return mean, jnp.full(self.output_shape, self.fixed_logvar, mean.dtype)
        logvar = self.param("logvar", nn.initializers.zeros, self.output_shape)
        return mean, logvar


# model.likelihood -> (the decoder wrapped to give what it reads, that output -> p(x|z))
_LIKELIHOODS = {
    "bernoulli": (lambda decoder, data_shape, fixed_logvar: decoder, distributions.Bernoulli),
    "gaussian": (GaussianHead, lambda out: distributions.DiagGaussian(*out)),
}


def likelihood_head(likelihood: str, decoder: nn.Module, data_shape, gaussian_logvar="learned"):
    """`decoder` wrapped to output what `likelihood` ("bernoulli": logits; "gaussian": mean and
    log-variance, the latter learned or the number `gaussian_logvar`) reads. Refuses an unknown
    likelihood, and a `gaussian_logvar` other than "learned" for a Bernoulli one (nothing
    would read it)."""
    if likelihood not in _LIKELIHOODS:
        raise ValueError(f"Unknown model.likelihood {likelihood!r}; choose one of {sorted(_LIKELIHOODS)}.")
    if likelihood != "gaussian" and gaussian_logvar != "learned":
        raise ValueError(f"model.gaussian_logvar={gaussian_logvar!r} does nothing with "
                         f"model.likelihood={likelihood!r} (it is read by 'gaussian'): set it to "
                         "'learned' or leave it out.")
    fixed = None if gaussian_logvar == "learned" else float(gaussian_logvar)
    wrap, _ = _LIKELIHOODS[likelihood]
    return wrap(decoder, tuple(data_shape), fixed)


def likelihood_distribution(likelihood: str, output):
    """p(x|z) from the output of a decoder wrapped by `likelihood_head(likelihood, ...)`."""
    _, to_distribution = _LIKELIHOODS[likelihood]
    return to_distribution(output)


def check_sizes(least: int = 1, **sizes) -> None:
    """Refuses a `model.<name>` size or count (an int, or a nested tuple of them) below
    `least`, naming it: `check_sizes(latent_dim=latent_dim, hidden_sizes=hidden_sizes)`."""
    for name, value in sizes.items():
        flat = list(_ints(value))
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= least for v in flat):
            raise ValueError(f"model.{name}={value!r} must be >= {least} (a size or count of the model).")


def _ints(value):
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _ints(v)
    else:
        yield value


@dataclasses.dataclass(frozen=True)
class EncoderDecoderVAE:
    """q(z|x) = N(mean, diag(exp(logvar))) from an encoder, p(z) = N(0, I), and p(x|z) the
    `likelihood` distribution of a decoder's output: the classic VAE, for any pair of Flax
    modules. `params` is `{"encoder": ..., "decoder": ...}`.
    """

    encoder: nn.Module
    decoder: nn.Module
    data_shape: tuple[int, ...]
    latent_dim: int
    likelihood_kind: str = "bernoulli"  # model.likelihood (`likelihood_head`)

    @classmethod
    def make(cls, encoder, decoder, *, data_shape, latent_dim, likelihood, gaussian_logvar):
        check_sizes(latent_dim=latent_dim)
        return cls(encoder, likelihood_head(likelihood, decoder, data_shape, gaussian_logvar),
                   tuple(data_shape), latent_dim, likelihood)

    def init(self, key: jax.Array) -> dict[str, Any]:
        enc_key, dec_key = jax.random.split(key)
        return {
            "encoder": self.encoder.init(enc_key, jnp.zeros(self.data_shape))["params"],
            "decoder": self.decoder.init(dec_key, jnp.zeros((self.latent_dim,)))["params"],
        }

    def posterior(self, params, x) -> distributions.DiagGaussian:
        """x: `data_shape` -> q(z|x), a diagonal Gaussian over (Z,)."""
        if x.shape != self.data_shape:
            raise ValueError(
                f"posterior takes one example of shape {self.data_shape}, got {x.shape}; "
                "vmap over a batch (vaejax.batch_elbo does)."
            )
        mean, logvar = self.encoder.apply({"params": params["encoder"]}, x)
        return distributions.DiagGaussian(mean, logvar)

    def prior(self, params) -> distributions.StandardNormal:
        del params
        return distributions.StandardNormal((self.latent_dim,))

    def likelihood(self, params, z):
        """z: (Z,) -> p(x|z): Bernoulli(logits) or DiagGaussian(mean, logvar) over x."""
        if z.shape != (self.latent_dim,):
            raise ValueError(f"likelihood takes one z of shape ({self.latent_dim},), got {z.shape}.")
        return likelihood_distribution(self.likelihood_kind,
                                       self.decoder.apply({"params": params["decoder"]}, z))


def num_params(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
