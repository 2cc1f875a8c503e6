"""Burda et al. (2015), table 1, one stochastic layer, at the paper's budget.

784-200-200-50 tanh MLP, Bernoulli likelihood, dynamically binarized MNIST (all 60,000
training images), Adam (b1 0.9, b2 0.999, eps 1e-4) at 1e-3 * 10^(-i/7) for stage i of 3^i
epochs, i = 0..7: 3280 epochs. Test NLL: IWAE K=5000 on all 10,000 test images.

    vaejax train --config experiments/iwae_mnist.py --workdir runs/burda/vae_k1
    vaejax train --config experiments/iwae_mnist.py --workdir runs/burda/iwae_k5 \
        --config.objective.kind=iwae --config.objective.num_samples=5
    vaejax train --config experiments/iwae_mnist.py --workdir runs/burda/iwae_k50 \
        --config.objective.kind=iwae --config.objective.num_samples=50
    vaejax sweep experiments/iwae_mnist.py --workdir sweeps/burda     # VAE and IWAE, k in {1, 5, 50}

Rerunning a command resumes it. One deviation: batch 100, not the paper's 20 (5x fewer steps
per epoch; 3280 epochs of the VAE is about 2 hours on 2 CPU cores instead of about 3.5).
Every 80th epoch's checkpoint is kept for the test-NLL learning curve
(`vaejax eval --workdir W --epoch E`).
Paper's test NLL (table 1): VAE k=1 86.76, IWAE k=5 85.54, IWAE k=50 84.78 nats.
"""

from vaejax.config import sibling


def get_config():
    config = sibling(__file__, "default").get_config()
    config.data.name = "mnist"
    config.data.num_validation = 0
    config.model.hidden_sizes = (200, 200)
    config.model.activation = "tanh"
    config.model.latent_dim = 50
    config.objective.kind = "elbo"       # the VAE; iwae with num_samples k for the IWAE rows
    config.objective.num_samples = 1
    config.train.batch_size = 100
    config.train.epochs = 3280
    config.train.checkpoint_every = 20
    config.train.keep_every = 80
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "burda"
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-4
    config.eval.iwae_samples = 5000
    return config


def get_sweep():
    """VAE (ELBO) and IWAE with k in {1, 5, 50}: six runs."""
    runs = []
    for kind in ("elbo", "iwae"):
        for k in (1, 5, 50):
            runs.append({"objective.kind": kind, "objective.num_samples": k})
    return runs
