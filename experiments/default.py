"""The README's `make run`: an MLP VAE on dynamically binarized Fashion-MNIST.

    vaejax train --config experiments/default.py --workdir runs/default

784-512-256-20 MLP, ReLU, Bernoulli likelihood, Adam 1e-3, batch 128, 10 epochs, then
evaluation (IWAE K=250: K=5000 would take 20x longer) and figures. Its measured time on
2 CPU cores is in the README ("Set-up").
Every other experiment starts from this file and changes what it needs.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.name = "fashion_mnist"       # mnist | fashion_mnist | binarized_mnist | cifar10 | idx:<folder>
    config.data.data_dir = ""                # a folder of IDX files; "" = VAEJAX_DATA_DIR, system, TFDS
    config.data.preprocessing = "dynamic_binarize"  # dynamic_binarize | threshold | scale | dequantize
    config.data.num_validation = 10_000      # the last N training images
    config.data.num_train = 0                # 0 = every remaining training image; N = the first N

    config.model = ml_collections.ConfigDict()
    config.model.kind = "mlp"                # mlp | conv | "module:attribute" (your own model)
    config.model.hidden_sizes = (512, 256)   # encoder; the decoder mirrors it
    config.model.activation = "relu"
    config.model.latent_dim = 20
    config.model.likelihood = "bernoulli"    # bernoulli | gaussian
    config.model.gaussian_logvar = "learned"  # or a number, e.g. "-2.0" (gaussian likelihood only)

    config.objective = ml_collections.ConfigDict()
    config.objective.kind = "elbo"           # elbo | iwae | miwae | piwae | ciwae | tcvae | rws | dip_vae | annealed_vae | factor_vae | "module:attribute"
    config.objective.num_samples = 1         # K: draws per example (per group for miwae, piwae)
    config.objective.num_groups = 1          # M: groups of K draws (miwae, piwae)
    config.objective.gradient_estimator = "reparam"  # reparam | stl | dreg (elbo and the iwae family)
    config.objective.beta = 1.0              # KL weight (elbo, tcvae's TC weight; ciwae: the ELBO's share)
    config.objective.beta_schedule = "constant"  # constant | linear | cyclical
    config.objective.warmup_steps = 0        # linear: steps from 0 to beta
    config.objective.cycle_steps = 0         # cyclical: steps per cycle
    config.objective.free_bits = 0.0         # nats per latent dimension (per layer: hierarchical)
    config.objective.kl_balance = False      # elbo, hierarchical models: NVAE's KL balancing while beta < 1
    config.objective.analytic_kl = True
    config.objective.alpha = 1.0             # tcvae: weight of the index-code mutual information
    config.objective.gamma = 1.0             # tcvae: weight of the dimension-wise KL; factor_vae: of the TC
    config.objective.sampling = "mws"        # tcvae: mws (minibatch weighted) | mss (stratified)
    config.objective.dip_type = "i"          # dip_vae: i (covariance of the means) | ii (of q(z))
    config.objective.lambda_od = 1.0         # dip_vae: weight of the off-diagonal covariance
    config.objective.lambda_d_factor = 10.0  # dip_vae: diagonal weight = this * lambda_od
    config.objective.capacity_max = 25.0     # annealed_vae: final capacity C_max, nats
    config.objective.capacity_weight = 1000.0  # annealed_vae: gamma, the weight of |KL - C|
    config.objective.capacity_steps = 100_000  # annealed_vae: steps from C = 0 to C_max

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"           # adam | adamw
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "constant"   # constant | cosine | warmup_cosine
    config.optimizer.warmup_steps = 0
    config.optimizer.weight_decay = 0.0      # adamw only
    config.optimizer.grad_clip_norm = 0.0    # 0 = no clipping
    config.optimizer.skip_grad_norm = 0.0    # > 0: skip updates with a larger (or non-finite) grad norm
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8

    config.train = ml_collections.ConfigDict()
    config.train.epochs = 10
    config.train.batch_size = 128
    config.train.checkpoint_every = 1        # epochs
    config.train.keep_checkpoints = 3
    config.train.keep_every = 0              # also keep every checkpoint whose epoch it divides
    config.train.progress_every = 100        # steps; a line inside long epochs (0 = none)
    config.train.ema_decay = 0.0             # > 0: evaluate and draw with an EMA of the parameters
    config.train.validate = True
    config.train.trackers = ("tensorboard",)  # and/or "wandb", "mlflow" (vaejax.trackers)
    config.train.tracker_project = "vaejax"  # the W&B project / MLflow experiment
    config.train.mlflow_tracking_uri = ""     # "" = MLflow's default (MLFLOW_TRACKING_URI)

    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 500
    config.eval.iwae_samples = 250           # K of the test NLL estimate (Burda et al. use 5000; 0 = none)
    config.eval.iwae_chunk = 250             # samples per chunk: bounds memory
    config.eval.iwae_batch_size = 100        # examples per chunk
    config.eval.num_test_examples = 0        # 0 = the whole test split
    config.eval.active_unit_threshold = 0.01
    config.eval.figures = True
    config.eval.ais_steps = 0                # AIS from q(z|x) on a test subset (0 = none; vaejax.ais)
    config.eval.ais_chains = 16
    config.eval.ais_num_examples = 100       # the first N test examples
    config.eval.ais_batch_size = 10          # examples per AIS batch
    config.eval.gap_steps = 0                # the inference-gap split: steps of q* per example (0 = none)
    config.eval.bdmc_examples = 0            # BDMC on this many examples simulated from the model
    config.eval.disentanglement = False      # MIG, SAP, DCI, modularity, BetaVAE and FactorVAE scores
    config.eval.disentanglement_examples = 10_000  # images they score (a dataset with factors)
    return config
