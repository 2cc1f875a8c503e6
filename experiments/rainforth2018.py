"""Rainforth et al. (2018), "Tighter variational bounds are not necessarily better", MNIST:
IWAE, MIWAE(8, 8), PIWAE(8, 8) and CIWAE(0.05), each with M * K = 64 draws per example.

    vaejax sweep experiments/rainforth2018.py --workdir sweeps/rainforth2018

The paper's setting is Burda et al.'s (experiments/iwae_mnist.py): 784-200-200-50 tanh,
Bernoulli likelihood, dynamically binarized MNIST, Adam (eps 1e-4), batch 20, test NLL from
IWAE K=5000 on the 10,000 test images. The paper's test NLL in nats, as the "reference
value" column of Pythae's reproducibility table quotes it (clementchadebec/benchmark_VAE,
examples/scripts/reproducibility/README.md): MIWAE(8,8) 84.97 ± 0.10, PIWAE(8,8) 84.46 ± 0.06,
CIWAE(0.05) 84.57 ± 0.09. The paper trains for thousands of epochs; `train.epochs` here is the
budget of this study.
Each objective is its own program (the objectives differ statically), so the sweep has one
vmapped group per objective; more seeds would join their objective's group.
"""

from vaejax.config import sibling

NUM_DRAWS = 64  # M * K per example, as in the paper


def get_config():
    """Every setting the study depends on is set here, not inherited from iwae_mnist.py
    (whose batch and schedule are Burda et al.'s and may change with that study)."""
    config = sibling(__file__, "iwae_mnist").get_config()
    config.data.name = "mnist"
    config.data.preprocessing = "dynamic_binarize"
    config.data.num_validation = 0
    config.data.num_train = 0
    config.model.hidden_sizes = (200, 200)
    config.model.activation = "tanh"
    config.model.latent_dim = 50
    config.model.likelihood = "bernoulli"
    config.objective.kind = "iwae"
    config.objective.num_samples = NUM_DRAWS
    config.train.batch_size = 20
    config.train.epochs = 5  # 15,000 steps: a budget for 2 CPU cores, not the paper's
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "constant"
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-4
    config.eval.iwae_samples = 5000
    config.eval.num_test_examples = 0
    return config


def get_sweep():
    """IWAE(64), MIWAE(8, 8), PIWAE(8, 8), CIWAE(beta=0.05, K=64): four runs, seed 0."""
    return [
        {"objective.kind": "iwae", "objective.num_samples": NUM_DRAWS},
        {"objective.kind": "miwae", "objective.num_groups": 8, "objective.num_samples": 8},
        {"objective.kind": "piwae", "objective.num_groups": 8, "objective.num_samples": 8},
        {"objective.kind": "ciwae", "objective.num_samples": NUM_DRAWS, "objective.beta": 0.05},
    ]
