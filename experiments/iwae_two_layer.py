"""Burda et al. (2015), table 1, two stochastic layers, at the paper's budget.

    vaejax train --config experiments/iwae_two_layer.py --workdir runs/burda/two_layer_vae_k1  # seed 0
    vaejax sweep experiments/iwae_two_layer.py --workdir runs/burda/two_layer_seeds \
        --config.train.epochs=160    # seeds 0, 1, 2 as one vmapped group, the first 160 epochs

The authors' architecture (yburda/iwae, experiments.py, `--layers 2`): x -200-200-> z1 (100)
-100-100-> z2 (50) in q, mirrored in p, tanh, diagonal Gaussians, Bernoulli p(x|z1): 521,084
parameters (`vaejax.models.hierarchical`, its L = 2 case). As in their code, the decoder's
output bias starts at the logit of the mean training image (`model.output_bias =
"mean_logit"`). Dynamically binarized MNIST (all 60,000 training images), 3280 epochs of
Adam at 1e-3 * 10^(-i/7) for stage i of 3^i epochs, as experiments/iwae_mnist.py. Test NLL:
IWAE K=5000 on all 10,000 test images.

Where this differs from their code, and why (the README's "Published results"):
batch 100, not 20 (5x fewer steps per epoch, the same 3280 epochs); Adam as the paper states it
(b1 0.9, eps 1e-4 on the batch-mean gradient; their optimizers.py defaults to b1 0.99 and starts
the second moment at ones); Flax's LeCun-normal weights instead of Glorot-uniform ones.
Paper's test NLL (table 1, two layers): VAE k=1 85.33, IWAE k=5 83.89, IWAE k=50 82.90 nats.

Every setting the study depends on is set here, not inherited, so a changed default elsewhere
cannot change what this command trains (`vaejax report --check docs/burda2015` checks it).
"""

import ml_collections

from vaejax.config import sibling


def get_config():
    config = sibling(__file__, "default").get_config()
    config.seed = 0
    config.data.name = "mnist"
    config.data.preprocessing = "dynamic_binarize"
    config.data.num_validation = 0
    config.data.num_train = 0
    config.model = ml_collections.ConfigDict(dict(
        kind="two_layer",
        latent_dims=(100, 50),                   # z1, z2
        hidden_sizes=((200, 200), (100, 100)),   # x <-> z1, z1 <-> z2 (mirrored in p)
        activation="tanh",
        likelihood="bernoulli",
        output_bias="mean_logit",
    ))
    config.objective.kind = "elbo"           # the VAE row; iwae with num_samples k for the IWAE rows
    config.objective.num_samples = 1
    config.train.batch_size = 100
    config.train.epochs = 3280
    config.train.checkpoint_every = 20
    config.train.keep_every = 80
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "burda"
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-4
    config.eval.iwae_samples = 5000
    return config


def get_sweep():
    """The VAE row over seeds 0, 1, 2: one vmapped group of three."""
    return [{"seed": s} for s in (0, 1, 2)]
