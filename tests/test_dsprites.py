"""Images with ground-truth factors: dSprites' factor grid re-rendered, the squares grid, the
reader of the original file, and the metrics run on render-then-encode functions."""

import math

import numpy as np
import pytest

from vaejax import disentanglement as dis
from vaejax.data import dsprites


def test_the_dsprites_grid_is_the_published_one():
    grid = dsprites.DSPRITES
    assert grid.sizes == (3, 6, 40, 32, 32) and grid.num_images == 737_280
    np.testing.assert_allclose(grid.values[1][[0, -1]], [0.5, 1.0])
    np.testing.assert_allclose(grid.values[2][[0, -1]], [0.0, 2 * math.pi])
    np.testing.assert_allclose(grid.values[3][[0, -1]], [0.0, 1.0])
    every = grid.all()
    assert every.shape == (737_280, 5)
    np.testing.assert_array_equal(every[:2], [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1]])  # last fastest
    np.testing.assert_array_equal(every[-1], [2, 5, 39, 31, 31])


def test_sprites_have_the_areas_of_their_shapes_and_move_with_their_factors():
    radius = 0.3 * 64  # pixels, at scale 1
    f = np.array([[0, 5, 0, 16, 16], [1, 5, 0, 16, 16], [0, 0, 0, 16, 16],
                  [2, 5, 0, 0, 16], [2, 5, 0, 31, 16]])
    images = dsprites.render_dsprites(f)
    assert images.shape == (5, 64, 64, 1) and set(np.unique(images)) <= {0, 1}
    area = images.sum(axis=(1, 2, 3))
    assert area[0] == pytest.approx((1.6 * radius) ** 2, rel=0.03)            # square, side 1.6 r
    assert area[1] == pytest.approx(math.pi * radius * radius / 2, rel=0.03)  # ellipse, r by r/2
    assert area[0] / area[2] == pytest.approx(4.0, rel=0.1)  # scale 1 vs 0.5 (a 15.4-px side: 15 px)
    columns = np.arange(64)
    centre_x = [(images[i, ..., 0].sum(0) * columns).sum() / area[i] for i in (3, 4)]
    assert centre_x[0] < 20 and centre_x[1] > 44                              # x from 0 to 1


def test_orientations_zero_and_two_pi_render_the_same_image_as_published():
    f = np.array([[s, 3, o, 10, 20] for s in range(3) for o in (0, 39)])
    images = dsprites.render_dsprites(f)
    for s in range(3):
        np.testing.assert_array_equal(images[2 * s], images[2 * s + 1])
    assert not np.array_equal(dsprites.render_dsprites(np.array([[2, 3, 10, 10, 20]]))[0], images[4])


def test_rendering_is_deterministic_and_chunk_independent():
    f = dsprites.DSPRITES.sample(np.random.default_rng(0), 37)
    calls = []
    np.testing.assert_array_equal(
        dsprites.render_dsprites(f, chunk=8, progress=lambda done, n: calls.append((done, n))),
        dsprites.render_dsprites(f))
    assert calls == [(8, 37), (16, 37), (24, 37), (32, 37), (37, 37)]  # one call per chunk


def test_the_squares_grid_renders_its_sizes():
    every = dsprites.SQUARES.all()
    images = dsprites.render_squares(every)
    assert images.shape == (1024, 32, 32, 1)
    sides = dsprites.SQUARES.value(every)[:, 2]
    np.testing.assert_array_equal(images.sum(axis=(1, 2, 3)), sides**2)


def test_the_original_file_is_read_into_the_same_form(tmp_path):
    classes = np.array([[0, 0, 0, 0, 0, 0], [0, 2, 5, 39, 31, 31]])
    images = np.zeros((2, 64, 64), np.uint8)
    images[1, 10:20, 10:20] = 1
    np.savez(tmp_path / "dsprites.npz", imgs=images, latents_classes=classes)
    factors, read = dsprites.load_dsprites_npz(tmp_path / "dsprites.npz")
    np.testing.assert_array_equal(factors, classes[:, 1:])
    assert read.shape == (2, 64, 64, 1) and read[1].sum() == 100
    np.savez(tmp_path / "other.npz", imgs=images, latents_classes=classes[:, :4])
    with pytest.raises(ValueError, match="not dSprites'"):
        dsprites.load_dsprites_npz(tmp_path / "other.npz")
    np.savez(tmp_path / "wrong.npz", pixels=images)
    with pytest.raises(ValueError, match="lacks"):
        dsprites.load_dsprites_npz(tmp_path / "wrong.npz")


def test_scores_of_an_encoder_that_reads_the_factors_off_the_pixels():
    """Render, then encode: an 'encoder' that returns each square's centre and side, measured
    on its pixels, is disentangled; one that mixes them is not."""
    def measured(f):
        images = dsprites.render_squares(f)[..., 0].astype(float)
        area = images.sum(axis=(1, 2))
        ys, xs = np.mgrid[:32, :32]
        cx = (images * xs).sum(axis=(1, 2)) / area
        cy = (images * ys).sum(axis=(1, 2)) / area
        return np.stack([cx, cy, np.sqrt(area)], axis=1)

    def mixed(f):
        return measured(f) @ np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 1.0], [0.0, 1.0, 1.0]])

    settings = dict(batch_size=16, num_train=150, num_eval=100, num_variance_estimate=1000)
    sizes = dsprites.SQUARES.sizes
    assert dis.factor_vae_score(measured, sizes, **settings)["eval_accuracy"] > 0.95
    assert dis.factor_vae_score(mixed, sizes, **settings)["eval_accuracy"] < 0.9
    f = dsprites.SQUARES.all()
    assert dis.mig(measured(f), f) > 2 * dis.mig(mixed(f), f)


def test_the_split_scales_its_own_copies_and_leaves_the_grid_it_was_given():
    factors = np.arange(40)[:, None]
    images = (factors % 2).astype(np.uint8).reshape(40, 1, 1, 1)
    split = dsprites._split(factors, images)
    assert set(np.unique(images)) == {0, 1}  # the caller's array is not scaled in place
    for part in ("train", "test"):
        np.testing.assert_array_equal(split[f"{part}_images"].reshape(-1),
                                      255 * (split[f"{part}_factors"][:, 0] % 2))
    assert len(split["train_images"]) + len(split["test_images"]) == 40


def test_factor_datasets_carry_their_factors_beside_the_images_and_models_never_see_them():
    from vaejax import config as config_lib  # noqa: PLC0415
    from vaejax.data import load_splits  # noqa: PLC0415
    from vaejax.program import Program  # noqa: PLC0415
    from run_helpers import REPO  # noqa: PLC0415

    config = config_lib.load_config(REPO / "experiments" / "default.py",
                                    ["data.name=squares", "data.num_validation=100"])
    splits = load_splits(config, log=lambda *_: None)
    assert splits.train.images.shape == (822, 32, 32, 1) and splits.test.images.shape == (102, 32, 32, 1)
    assert splits.validation.factors.shape == (100, 3) and splits.test.factors.shape == (102, 3)
    assert set(np.unique(np.asarray(splits.train.images))) == {0, 255}
    # each image is the rendering of its own factors
    np.testing.assert_array_equal(np.asarray(splits.test.images) // 255,
                                  dsprites.render_squares(np.asarray(splits.test.factors)))
    every = {tuple(f) for f in np.asarray(splits.test.factors)}
    assert {f[2] for f in every} == {0, 1, 2, 3}  # the test split covers every size
    program = Program.build(config, splits.image_shape, splits.train.num_examples)
    model_data = program.model_data(splits)
    assert model_data.train.factors is None and model_data.test.factors is None


def test_a_users_dataset_may_give_factors_and_bad_ones_are_refused():
    from vaejax.data import datasets  # noqa: PLC0415

    images = np.zeros((4, 2, 2, 1), np.uint8)
    good = datasets._as_dataset("mine", {"train_images": images, "test_images": images,
                                         "train_factors": np.zeros((4, 2), int),
                                         "test_factors": np.ones((4, 2), int)})
    assert good.train_factors.dtype == np.int32 and good.test_factors.shape == (4, 2)
    with pytest.raises(ValueError, match=r"train_factors are float64 of shape \(4, 2\); expected \(4, F\) integers"):
        datasets._as_dataset("mine", {"train_images": images, "test_images": images,
                                      "train_factors": np.zeros((4, 2))})
