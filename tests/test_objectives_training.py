"""`vaejax.objectives.training`: every registered objective trains a vmapped group from its
config, and PIWAE and RWS send each parameter the gradient of its own objective."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import loop
from vaejax.objectives import bounds, common, training
from vaejax.program import Program, vmapped_keys

from tiny import IMAGE_SHAPE, images, tiny_config  # noqa: E402

KINDS = {  # kind -> overrides; two members differ in every traced scalar
    "elbo": ["objective.gradient_estimator=stl"],
    "iwae": ["objective.num_samples=4", "objective.gradient_estimator=dreg"],
    "miwae": ["objective.num_groups=2", "objective.num_samples=3", "objective.gradient_estimator=dreg"],
    "ciwae": ["objective.num_samples=4", "objective.beta=0.05"],
    "piwae": ["objective.num_groups=2", "objective.num_samples=3"],
    "rws": ["objective.num_samples=4"],
    "tcvae": ["objective.sampling=mss", "objective.alpha=0.5", "objective.gamma=2.0"],
    "dip_vae": ["objective.dip_type=ii", "objective.lambda_od=2.0", "objective.lambda_d_factor=1.0"],
    "annealed_vae": ["objective.capacity_max=5.0", "objective.capacity_weight=10.0",
                     "objective.capacity_steps=16"],
    "factor_vae": ["objective.gamma=10.0"],
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_objective_trains_a_vmapped_group(kind):
    """Three members: the config, the same seed with every traced scalar doubled, and another
    seed. Training lowers each member's loss (a sign-flipped objective raises it), and the
    doubled scalars change the trajectory (a scalar that never reaches the loss does not)."""
    config = tiny_config(f"objective.kind={kind}", "optimizer.learning_rate=1e-2", *KINDS[kind])
    program = Program.build(config, IMAGE_SHAPE, 64)
    base = program.hyper(config)
    members = [base, {**base, **{s: base[s] * 2 for s in program.scalars}},
               {**base, "seed": jnp.int32(1)}]
    hyper = jax.tree.map(lambda *a: jnp.stack(a), *members)
    fns = loop.epoch_functions(program, num_members=3)
    state = jax.vmap(program.init_state)(hyper)
    before = jax.tree.map(np.asarray, state.params)
    # two black-and-white prototypes: learnable, so training must lower the loss
    prototypes = (images(2) > 127).astype(np.uint8) * 255
    data = jnp.asarray(prototypes[np.arange(64) % 2])
    losses = []
    for epoch in range(4):
        state, metrics = fns.epoch(state, hyper, data, jnp.int32(epoch))
        losses.append(np.asarray(metrics["loss"]))
    losses = np.concatenate(losses, axis=1)  # (3 members, 32 steps)
    assert losses.shape == (3, 32) and np.all(np.isfinite(losses))
    assert np.all(losses[:, -8:].mean(1) < losses[:, :8].mean(1) - 0.5), losses
    assert {"loss", "rate", "distortion", "lr", *program.scalars} <= set(metrics)
    for b, a in zip(jax.tree.leaves(before), jax.tree.leaves(state.params)):
        assert np.all(np.isfinite(a)) and not np.array_equal(a, b)
    first = lambda tree, i: [np.asarray(leaf[i]) for leaf in jax.tree.leaves(tree)]  # noqa: E731
    same_seed_other_scalars = any(not np.array_equal(a, b) for a, b in
                                  zip(first(state.params, 0), first(state.params, 1)))
    assert same_seed_other_scalars == bool(program.scalars)
    assert all(f"objective.{s}" in vmapped_keys(config) for s in program.scalars)


def _model_and_batch(config):
    program = Program.build(config, IMAGE_SHAPE, 64)
    params = program.model.init(jax.random.key(0))
    x = program.inputs(jax.random.key(1), jnp.asarray(images(8)))
    return program, params, x


def _grad(loss_fn, params):
    return jax.grad(lambda p: loss_fn(p)[0])(params)


def test_piwae_sends_the_decoder_iwae_and_the_encoder_miwae():
    program, params, x = _model_and_batch(
            tiny_config("objective.kind=piwae", "objective.num_groups=2", "objective.num_samples=3"))
    key = jax.random.key(2)
    model = program.model

    def bound(fn, **kw):
        def loss(p):
            encode, decode, prior = common.model_functions(model, p)
            return fn(key, x, encode, decode, prior=prior, **kw)[0] * -1.0, None
        return loss

    piwae = _grad(lambda p: program.objective(key, x, model, p), params)
    iwae = _grad(bound(bounds.batch_iwae_bound, num_samples=6), params)
    miwae = _grad(bound(bounds.batch_miwae_bound, num_groups=2, num_samples=3), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 piwae["decoder"], iwae["decoder"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 piwae["encoder"], miwae["encoder"])
    loss, metrics = program.objective(key, x, model, params)
    np.testing.assert_allclose(-loss, bound(bounds.batch_iwae_bound, num_samples=6)(params)[0] * -1.0, rtol=1e-6)
    assert float(metrics["miwae"]) <= float(-loss) + 1e-4  # same draws: Jensen, MIWAE(M, K) <= IWAE(MK)


def test_rws_decoder_gets_the_iwae_gradient_and_the_encoder_the_wake_phi_update():
    program, params, x = _model_and_batch(tiny_config("objective.kind=rws", "objective.num_samples=4"))
    key = jax.random.key(3)
    model = program.model
    rws = _grad(lambda p: program.objective(key, x, model, p), params)

    def iwae(p):
        encode, decode, prior = common.model_functions(model, p)
        return -bounds.batch_iwae_bound(key, x, encode, decode, prior=prior, num_samples=4)[0], None

    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 rws["decoder"], _grad(iwae, params)["decoder"])

    def wake_phi(p):  # independent: sum_k w~_k log q(z_k|x) with the draws and weights fixed
        keys = jax.random.split(key, x.shape[0])

        def one(k, x_i):
            q = model.posterior(p, x_i)
            z = jax.lax.stop_gradient(q.sample(seed=k, sample_shape=(4,)))
            log_w = jax.vmap(lambda z: model.likelihood(params, z).log_prob(x_i))(z) \
                + model.prior(params).log_prob(z) - model.posterior(params, x_i).log_prob(z)
            return jnp.sum(jax.nn.softmax(log_w) * q.log_prob(z))

        return -jnp.mean(jax.vmap(one)(keys, x)), None

    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 rws["encoder"], _grad(wake_phi, params)["encoder"])


def test_tcvae_reads_the_training_set_size_and_defaults_its_weights():
    config = tiny_config("objective.kind=tcvae")
    program = Program.build(config, IMAGE_SHAPE, 64)
    assert program.objective.dataset_size == 64 and program.scalars == ("alpha", "beta", "gamma")
    assert {k: float(v) for k, v in program.hyper(config).items() if k in program.scalars} == \
        {"alpha": 1.0, "beta": 1.0, "gamma": 1.0}
    assert vmapped_keys(config)[2:] == ("objective.alpha", "objective.beta", "objective.gamma")


def test_a_bad_gradient_estimator_fails_when_the_program_is_built():
    with pytest.raises(ValueError, match="objective.gradient_estimator='drag'"):
        Program.build(tiny_config("objective.kind=iwae", "objective.gradient_estimator=drag"), IMAGE_SHAPE, 64)
