"""Models as plug-ins: the protocol and registry (`base`), one file per built-in model.

`vaejax.models.build(config.model, image_shape)` gives the model that `config.model.kind`
names: "mlp", "conv", "beta_vae_conv", "vampprior", "hierarchical", "ladder", "two_layer",
"iaf", "conditional", or your own
"module:attribute".
"""
from vaejax.models import beta_vae_conv  # noqa: F401  (registers "beta_vae_conv")
from vaejax.models import conditional  # noqa: F401  (registers "conditional")
from vaejax.models import conv  # noqa: F401  (registers "conv")
from vaejax.models import hierarchical  # noqa: F401  ("hierarchical", "ladder", "two_layer")
from vaejax.models import iaf  # noqa: F401  (registers "iaf")
from vaejax.models import mlp  # noqa: F401  (registers "mlp")
from vaejax.models import vampprior  # noqa: F401  (registers "vampprior")
from vaejax.models.base import ACTIVATIONS
from vaejax.models.base import MODELS
from vaejax.models.base import EncoderDecoderVAE
from vaejax.models.base import GaussianHead
from vaejax.models.base import activation_fn
from vaejax.models.base import build
from vaejax.models.base import check_sizes
from vaejax.models.base import data_shape
from vaejax.models.base import likelihood_distribution
from vaejax.models.base import likelihood_head
from vaejax.models.base import num_params
from vaejax.models.conv import conv_vae
from vaejax.models.mlp import mlp_vae
