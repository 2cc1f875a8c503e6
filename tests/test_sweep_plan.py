"""Sweep plans: the plan language, run names, groups and shards."""

import json

import pytest
from test_sweep_group import GROUP_2, REPO, SHRINK, SMOKE

from vaejax import config as config_lib
from vaejax.sweep import plan as plan_lib


def test_product_is_every_combination_with_short_names():
    runs = plan_lib.product(latent_dim=[2, 5, 10, 20, 50], beta=[0.25, 0.5, 1, 2, 4],
                            seed=[0, 1, 2])
    assert len(runs) == 75
    assert runs[0] == {"model.latent_dim": 2, "objective.beta": 0.25, "seed": 0}
    # The last axis varies fastest.
    assert runs[1] == {"model.latent_dim": 2, "objective.beta": 0.25, "seed": 1}
    assert runs[-1] == {"model.latent_dim": 50, "objective.beta": 4, "seed": 2}
    assert len({json.dumps(r, sort_keys=True) for r in runs}) == 75


def test_zip_and_nested_product():
    assert plan_lib.zip_(beta=[1, 2], lr=[1e-3, 3e-4]) == [
        {"objective.beta": 1, "optimizer.learning_rate": 1e-3},
        {"objective.beta": 2, "optimizer.learning_rate": 3e-4}]
    runs = plan_lib.product(plan_lib.zip_(beta=[1, 2], learning_rate=[1e-3, 3e-4]), seed=[0, 1])
    assert [(r["objective.beta"], r["seed"]) for r in runs] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert plan_lib.product(**{"model.hidden_sizes": [(32,), (64, 32)]}) == [
        {"model.hidden_sizes": (32,)}, {"model.hidden_sizes": (64, 32)}]
    with pytest.raises(ValueError, match="equal length"):
        plan_lib.zip_(beta=[1, 2], seed=[0])
    with pytest.raises(config_lib.ConfigError, match="two axes"):
        plan_lib.product(plan_lib.zip_(seed=[0]), seed=[1])


def test_run_names_are_stable_and_filesystem_safe():
    assert plan_lib.run_name({"model.latent_dim": 2, "objective.beta": 0.5, "seed": 0}) == \
        "latent_dim=2,beta=0.5,seed=0"
    assert plan_lib.run_name(
        {"optimizer.learning_rate": 1e-4, "model.hidden_sizes": (64, 32)}) == \
        "lr=0.0001,hidden_sizes=64x32"
    assert plan_lib.run_name({"data.name": "idx:/a b/c"}) == "name=idx__a_b_c"
    assert plan_lib.run_name({}) == "base"
    # Keys that share a last component keep their dotted names.
    names = plan_lib.short_names(["objective.warmup_steps", "optimizer.warmup_steps"])
    assert names == {"objective.warmup_steps": "objective.warmup_steps",
                     "optimizer.warmup_steps": "optimizer.warmup_steps"}
    long = plan_lib.run_name({"data.data_dir": "x" * 400})
    assert len(long) <= 150 and long != plan_lib.run_name({"data.data_dir": "x" * 399})


def test_plan_groups_runs_that_differ_only_in_hyper_fields():
    plan = plan_lib.make_plan(SMOKE, overrides=SHRINK)
    assert [r.name for r in plan.runs[:4]] == GROUP_2
    assert [(g.id, len(g.runs)) for g in plan.groups] == [("latent_dim=2", 4), ("latent_dim=4", 4)]
    assert plan.runs[0].config.data.num_train == 512 and plan.runs[0].config.objective.beta == 0.5
    split = plan_lib.make_plan(SMOKE, max_group_size=3)
    assert [(g.id, len(g.runs)) for g in split.groups] == [
        ("latent_dim=2,part=1of2", 2), ("latent_dim=2,part=2of2", 2),
        ("latent_dim=4,part=1of2", 2), ("latent_dim=4,part=2of2", 2)]
    shards = [plan_lib.shard_groups(split.groups, f"{i}/3") for i in range(3)]
    assert sorted(g.id for s in shards for g in s) == sorted(g.id for g in split.groups)
    assert [g.id for g in shards[1]] == ["latent_dim=2,part=2of2"]
    # a group with the base config's value is named by it too ("all" would read as every run)
    base = plan_lib.make_plan(SMOKE, overrides=["--config.model.latent_dim=4"])
    assert [g.id for g in base.groups] == ["latent_dim=2", "latent_dim=4"]
    with pytest.raises(config_lib.ConfigError, match="0 <= i < n"):
        plan_lib.parse_shard("3/3")


def test_a_group_is_named_by_what_its_runs_set_not_by_what_other_methods_set():
    """In a study of several methods, a β-VAE group is not named by the FactorVAE's gamma or
    the DIP-VAE's settings at their base values, which it does not set."""
    plan = plan_lib.make_plan(REPO / "experiments" / "locatello2019.py", max_group_size=3)
    ids = [g.id for g in plan.groups]
    assert len(ids) == len(set(ids)) == 36
    assert ids[0] == "kind=elbo,part=1of6" and "kind=factor_vae,part=6of6" in ids
    assert "kind=dip_vae,dip_type=i,part=1of6" in ids and "kind=dip_vae,dip_type=ii,part=1of6" in ids


def test_a_sweep_finds_the_plug_ins_beside_its_file_as_train_does():
    """The documented plug-in sweep (experiments/mixture_prior_mnist.py, a model from
    experiments/my_models/) plans from any working directory: its runs' experiment_dir is the
    sweep file's folder, as `vaejax train`'s is."""
    from run_helpers import REPO  # noqa: PLC0415
    from vaejax.program import check_new_run  # noqa: PLC0415

    path = REPO / "experiments" / "mixture_prior_mnist.py"
    plan = plan_lib.make_plan(path)
    assert {run.config.experiment_dir for run in plan.runs} == {str(path.parent)}
    assert plan.base_config == config_lib.load_config(path)
    for run in plan.runs:
        check_new_run(run.config)  # imports my_models.mixture_prior from that folder
