"""Tests for vaejax/plots.py: exact pixel sizes and tile placement, skipped rows, input errors."""
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vaejax import plots

GRAY_28 = (28, 28, 1)


def _read_png(path: pathlib.Path) -> np.ndarray:
    """Verifies the PNG, reopens it, checks it is RGB with varied content; returns (H, W, 3) uint8."""
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode == "RGB"
        pixels = np.asarray(image)
    assert pixels.std() > 0, "figure is a single colour"
    return pixels


def _constant_tiles(values, shape=GRAY_28) -> np.ndarray:
    """One constant-valued tile per value: (len(values), *shape)."""
    return np.asarray(values, dtype=np.float32)[:, None, None, None] * np.ones(shape, np.float32)


def _gray_at(pixels: np.ndarray, y: int, x: int) -> int:
    r, g, b = (int(c) for c in pixels[y, x])
    assert r == g == b, (y, x, pixels[y, x])
    return r


def _sweep_rows() -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for latent_dim in [2, 5, 10, 20]:
        for beta in [0.25, 1.0, 4.0]:
            for seed in range(3):
                rate = min(latent_dim, 10) * 3.0 / beta + rng.normal()
                distortion = 60 + 80 / (1 + rate / 10) + rng.normal()
                rows.append({"latent_dim": latent_dim, "beta": beta, "seed": seed, "test/rate": rate,
                             "test/distortion": distortion, "test/nll": rate + distortion - 2.0,
                             "active_units": min(latent_dim, 16 / beta) + seed % 2,
                             "kl_per_dim": list(np.where(np.arange(latent_dim) < 16 / beta,
                                                         3.0 / beta, 1e-5) + 0.01 * seed)})
    rows[0]["test/rate"] = None
    rows[1]["test/nll"] = float("nan")
    rows[2]["active_units"] = None
    del rows[3]["test/distortion"]
    rows.append({"latent_dim": 5, "beta": 0.0, "seed": 0, "test/rate": 1.0, "test/distortion": 2.0,
                 "test/nll": 3.0, "active_units": 4})          # beta = 0 cannot go on a log axis
    rows.append({"latent_dim": None, "beta": None, "seed": None, "test/rate": None, "test/distortion": None,
                 "test/nll": None, "active_units": None})
    return rows


# ----------------------------------------------------------------------------- image mosaics


def test_image_grid_size_and_tile_placement(tmp_path):
    values = 0.1 + 0.8 * np.arange(23) / 22
    path = plots.image_grid(_constant_tiles(values), tmp_path / "grid.png", ncols=10)
    assert path == tmp_path / "grid.png"
    pixels = _read_png(path)
    # 3 rows x 10 columns of 28 px with 1 px separators, scale s = 64 // 28 = 2, 8 px padding.
    assert pixels.shape[:2] == (2 * (3 * 28 + 2) + 16, 2 * (10 * 28 + 9) + 16) == (188, 594)
    for i, value in enumerate(values):
        r, c = divmod(i, 10)
        y, x = 8 + 2 * 29 * r + 28, 8 + 2 * 29 * c + 28       # centre of tile (r, c)
        assert abs(_gray_at(pixels, y, x) - round(255 * value)) <= 1, (i, value)
    assert _gray_at(pixels, 8 + 28, 8 + 2 * 28) == 255        # separator after the first tile
    assert _gray_at(pixels, 8 + 2 * 58 + 28, 8 + 2 * 29 * 5 + 28) == 255  # blank tile (2, 5)


def test_image_grid_rgb_with_title(tmp_path):
    rgb = np.zeros((3, 16, 16, 3), np.float32)
    rgb[0, ..., 0] = rgb[1, ..., 1] = rgb[2, ..., 2] = 1.0
    rgb[2] = 5.0 * rgb[2] - 2.0                                # out of range: clipped to [0, 1]
    pixels = _read_png(plots.image_grid(rgb, tmp_path / "rgb.png", ncols=3, title="RGB"))
    # s = min(64 // 16, 2048 // 50) = 4; 32 px title band above the mosaic, 8 px elsewhere.
    assert pixels.shape[:2] == (4 * 16 + 40, 4 * (3 * 16 + 2) + 16) == (104, 216)
    centres = [pixels[32 + 32, 8 + 4 * 17 * c + 32] for c in range(3)]
    np.testing.assert_array_equal(centres, [[255, 0, 0], [0, 255, 0], [0, 0, 255]])


def test_image_grid_size_is_exact_where_inches_times_dpi_rounds_down(tmp_path):
    # 2.55 * 100 and 0.29 * 100 are just below 255 and 29 in floating point (older matplotlib truncates).
    image = np.random.default_rng(0).uniform(size=(1, 13, 239, 1))      # s = 1
    pixels = _read_png(plots.image_grid(image, tmp_path / "odd.png"))
    assert pixels.shape[:2] == (13 + 16, 239 + 16) == (29, 255)


def test_prior_samples(tmp_path):
    values = np.linspace(0.1, 0.9, 10)
    pixels = _read_png(plots.prior_samples(_constant_tiles(values), tmp_path / "prior.png"))
    assert pixels.shape[:2] == (2 * 28 + 40, 2 * 289 + 16) == (96, 594)
    # below the 32 px title band, one row of ten tiles in the order given
    for c, value in enumerate(values):
        assert abs(_gray_at(pixels, 32 + 28, 8 + 2 * 29 * c + 28) - round(255 * value)) <= 1, c


def test_layer_samples_one_row_per_layer(tmp_path):
    values = [0.1] * 4 + [0.5] * 4 + [0.9] * 4  # three layers, four columns
    pixels = _read_png(plots.layer_samples(_constant_tiles(values), tmp_path / "layers.png",
                                           layers=["z3", "z2", "z1"]))
    image = Image.open(tmp_path / "layers.png")
    assert image.size[0] > 4 * 28 and image.size[1] > 3 * 28
    column = np.asarray([_gray_at(pixels, y, x) for y in range(pixels.shape[0])
                         for x in [pixels.shape[1] // 2]])
    for value in (0.1, 0.5, 0.9):  # every row's gray level is drawn, top to bottom
        assert np.any(np.abs(column - round(255 * value)) <= 1), value
    rows = [np.flatnonzero(np.abs(column - round(255 * v)) <= 1).mean() for v in (0.1, 0.5, 0.9)]
    assert rows == sorted(rows)
    with pytest.raises(ValueError, match="multiple of len\\(layers\\) = 3"):
        plots.layer_samples(_constant_tiles([0.5] * 4), tmp_path / "bad.png", layers=["a", "b", "c"])


def test_reconstructions_pairs_rows(tmp_path):
    inputs, outputs = _constant_tiles([0.2] * 13), _constant_tiles([0.8] * 13)
    pixels = _read_png(plots.reconstructions(inputs, outputs, tmp_path / "recon.png", ncols=5))
    # 3 row pairs of 5: mosaic 144 x (6*28 + 3*1 + 2*4 = 179); widened to the 52-character title.
    assert pixels.shape[:2] == (2 * 179 + 40, 10 * 52 + 16) == (398, 536)
    left = 8 + (536 - (2 * 144 + 16)) // 2                   # the mosaic is centred
    tile_x = left + 28
    row_tops = [0, 29, 61, 90, 122, 151]                       # 1 px within a pair, 4 px between pairs
    for row, top in enumerate(row_tops):
        expected = 51 if row % 2 == 0 else 204                 # input rows 0.2, reconstructions 0.8
        assert abs(_gray_at(pixels, 32 + 2 * top + 28, tile_x) - expected) <= 1, row
    # Tiles 13 and 14 do not exist: the last pair is padded with white.
    assert _gray_at(pixels, 32 + 2 * 122 + 28, left + 2 * 29 * 4 + 28) == 255


def test_reconstructions_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="same shape"):
        plots.reconstructions(np.zeros((4,) + GRAY_28), np.zeros((5,) + GRAY_28), tmp_path / "r.png")


def test_latent_manifold(tmp_path):
    g = 4
    images = _constant_tiles(np.linspace(0, 1, g * g))
    pixels = _read_png(plots.latent_manifold(images, tmp_path / "manifold.png", grid_size=g, extent=3.0))
    side = 2 * (4 * 28 + 3) + 88                               # s = 2; 72 + 16 and 32 + 56 px margins
    assert pixels.shape[:2] == (side, side) == (318, 318)
    # Row-major: the first image (value 0) is top left, the last (value 1) bottom right.
    assert _gray_at(pixels, 32 + 28, 72 + 28) == 0
    assert _gray_at(pixels, 32 + 2 * 29 * 3 + 28, 72 + 2 * 29 * 3 + 28) == 255


def test_latent_manifold_rejects_wrong_count(tmp_path):
    with pytest.raises(ValueError, match=r"grid_size\*\*2 = 16 images for grid_size=4, got 15"):
        plots.latent_manifold(np.zeros((15,) + GRAY_28), tmp_path / "m.png", grid_size=4, extent=2.0)
    with pytest.raises(ValueError, match="extent"):
        plots.latent_manifold(np.zeros((16,) + GRAY_28), tmp_path / "m.png", grid_size=4, extent=0.0)


def test_latent_traversals(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3 * 7, 16, 16, 1))
    path = plots.latent_traversals(images, tmp_path / "trav.png", num_dims=3, num_steps=7,
                                   values=np.linspace(-3, 3, 7), dims=[0, 4, 9])
    pixels = _read_png(path)
    # s = min(64 // 16, 2048 // 118) = 4; margins 88 px wide and high.
    assert pixels.shape[:2] == (4 * (3 * 16 + 2) + 88, 4 * (7 * 16 + 6) + 88) == (288, 560)
    # row i is latent dim i's traversal, column j its j-th value: constant tiles show where
    # each of the 21 images went (a transposed grid puts them elsewhere)
    values = np.linspace(0.05, 0.95, 21)
    pixels = _read_png(plots.latent_traversals(_constant_tiles(values, (16, 16, 1)), tmp_path / "t.png",
                                               num_dims=3, num_steps=7, values=np.linspace(-3, 3, 7)))
    band = pixels[:, :, 0].astype(int)
    found = {}
    for i, value in enumerate(values):  # each value's tile: the pixels of its gray level
        ys, xs = np.nonzero(np.abs(band - round(255 * value)) <= 1)
        assert ys.size >= 16 * 16, (i, value)
        found[i] = (np.median(ys), np.median(xs))
    for i in range(21):
        row, step = divmod(i, 7)
        if step:   # to the right of the previous step, in the same row
            assert found[i][1] > found[i - 1][1] and abs(found[i][0] - found[i - 1][0]) < 4
        if row:    # below the same step of the previous dim
            assert found[i][0] > found[i - 7][0] and abs(found[i][1] - found[i - 7][1]) < 4


@pytest.mark.parametrize("kwargs, message", [
        (dict(num_dims=3, num_steps=6, values=np.zeros(6)), "num_dims \\* num_steps = 3 \\* 6 = 18 images, got 21"),
        (dict(num_dims=3, num_steps=7, values=np.zeros(6)), "values must have num_steps = 7 entries, got 6"),
        (dict(num_dims=3, num_steps=7, values=np.zeros(7), dims=[0, 1]), "dims must have num_dims = 3"),
        (dict(num_dims=0, num_steps=7, values=np.zeros(7)), "num_dims must be a positive integer"),
])
def test_latent_traversals_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.latent_traversals(np.zeros((21,) + GRAY_28), tmp_path / "t.png", **kwargs)


@pytest.mark.parametrize("images, message", [
        (np.zeros((4, 28, 28)), "rank 4"),
        (np.zeros((28, 28)), "rank 4"),
        (np.zeros((4, 28, 28, 2)), "C = 1 \\(gray\\) or 3 \\(RGB\\)"),
        (np.zeros((0, 28, 28, 1)), "at least one"),
        (np.zeros((4, 28, 28, 1), np.uint8), "floats in \\[0, 1\\], got dtype uint8"),
])
def test_image_functions_reject_bad_images(tmp_path, images, message):
    with pytest.raises(ValueError, match=message):
        plots.image_grid(images, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=message):
        plots.prior_samples(images, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_boolean_images_are_accepted(tmp_path):
    images = np.random.default_rng(0).uniform(size=(4,) + GRAY_28) > 0.5     # binarized samples
    _read_png(plots.image_grid(images, tmp_path / "binary.png"))


# ----------------------------------------------------------------------------- training curves


def test_training_curves_skip_missing_values(tmp_path):
    records = []
    for epoch in range(1, 21):
        record = {"epoch": epoch, "train/neg_elbo": 100 + 200 / epoch, "train/rate": 20 - 5 / epoch,
                  "train/distortion": 80 + 200 / epoch}
        if epoch % 5 == 0:
            record.update({"val/neg_elbo": 105 + 200 / epoch, "val/rate": None, "val/distortion": float("nan")})
        records.append(record)
    records.append({"train/neg_elbo": 1e6})                   # no epoch: skipped
    records.append({"epoch": 20, "train/rate": 19.5})         # a resumed run repeats epoch 20
    pixels = _read_png(plots.training_curves(records, tmp_path / "curves.png"))
    assert pixels.shape[:2] == tuple(reversed(plots.TRAINING_CURVES_PX)) == (450, 1500)

    epochs, values = plots._series(records, "val/neg_elbo")
    np.testing.assert_array_equal(epochs, [5, 10, 15, 20])
    np.testing.assert_allclose(values, [145, 125, 105 + 200 / 15, 115])
    epochs, values = plots._series(records, "train/rate")
    assert epochs.size == 20 and values[-1] == 19.5          # the last record of an epoch wins
    assert plots._series(records, "val/distortion")[0].size == 0


def test_training_curves_without_records(tmp_path):
    pixels = _read_png(plots.training_curves([], tmp_path / "empty.png"))
    assert pixels.shape[:2] == (450, 1500)


# ----------------------------------------------------------------------------- sweep figures


SWEEP_FIGURES = [plots.rate_distortion, plots.nll_vs_latent_dim, plots.active_units_vs_beta,
                 plots.kl_per_unit]


def _drawn_data(monkeypatch, plot, rows, path) -> list[str]:
    """The points and lines `plot` draws for `rows` (not its texts), as text."""
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, p: (figures.append(fig), save(fig, p))[1])
    plot(rows, path)
    monkeypatch.setattr(plots, "_save", save)
    (fig,) = figures
    return sorted([plots._numbers(c.get_offsets()) for ax in fig.axes for c in ax.collections]
                  + [plots._numbers(line.get_xydata()) for ax in fig.axes for line in ax.get_lines()]
                  + [plots._numbers(im.get_array()) for ax in fig.axes for im in ax.get_images()]
                  + [t.get_text() for ax in fig.axes for t in ax.texts if "skipped" not in t.get_text()])


@pytest.mark.parametrize("plot", SWEEP_FIGURES)
def test_sweep_figures_skip_incomplete_rows(tmp_path, plot, monkeypatch):
    pixels = _read_png(plot(_sweep_rows(), tmp_path / f"{plot.__name__}.png"))
    assert pixels.shape[:2] == tuple(reversed(plots.SWEEP_FIGURE_PX)) == (560, 800)
    if plot is plots.kl_per_unit:
        return  # its rows need kl_per_dim: test_kl_per_unit_... checks what it skips
    # what is drawn from every row is what is drawn from the complete rows alone
    keys = {plots.rate_distortion: ("test/rate", "test/distortion", "beta"),
            plots.nll_vs_latent_dim: ("test/nll", "latent_dim"),
            plots.active_units_vs_beta: ("active_units", "beta")}[plot]
    complete = [row for row in _sweep_rows() if all(
        isinstance(row.get(k), (int, float)) and np.isfinite(row[k]) for k in keys + ("latent_dim",))
        and (plot is plots.nll_vs_latent_dim or row["beta"] > 0)]
    assert 0 < len(complete) < len(_sweep_rows())
    drawn = _drawn_data(monkeypatch, plot, _sweep_rows(), tmp_path / "all.png")
    assert drawn and drawn == _drawn_data(monkeypatch, plot, complete, tmp_path / "complete.png")
    changed = [dict(row) for row in complete]
    changed[0][keys[0]] += 1.0  # and a changed value is seen
    assert drawn != _drawn_data(monkeypatch, plot, changed, tmp_path / "changed.png")


@pytest.mark.parametrize("plot", SWEEP_FIGURES)
def test_sweep_figures_without_complete_rows(tmp_path, plot):
    rows = [{"latent_dim": 2, "beta": 1.0, "seed": 0, "test/rate": None, "test/distortion": float("nan"),
             "test/nll": None, "active_units": float("nan")}]
    pixels = _read_png(plot(rows, tmp_path / "empty.png"))
    assert pixels.shape[:2] == (560, 800)


def test_sweep_rows_are_filtered_and_grouped():
    rows = _sweep_rows()
    valid = plots._valid_rows(rows, ("latent_dim", "beta", "test/rate", "test/distortion"))
    assert len(rows) == 38 and len(valid) == 36 - 2           # rows 0 and 3, beta = 0 and all-None dropped
    valid = plots._valid_rows(rows, ("latent_dim", "beta", "active_units"))
    x, mean, lo, hi = plots._group_stats([r for r in valid if r["latent_dim"] == 20], "beta", "active_units")
    np.testing.assert_array_equal(x, [0.25, 1.0, 4.0])
    # seeds 0, 1, 2 add 0, 1, 0 active units to min(20, 16 / beta) = 20, 16, 4.
    np.testing.assert_allclose(mean, [20 + 1 / 3, 16 + 1 / 3, 4 + 1 / 3])
    np.testing.assert_array_equal(lo, [20, 16, 4])
    np.testing.assert_array_equal(hi, [21, 17, 5])
    assert plots._units_text(16 + 1 / 3, 16, 17, 20) == "16.3/20\n(16–17)"  # a cell of the table
    assert plots._units_text(8, 8, 8, 10) == "8/10"


def test_kl_per_unit_one_panel_per_latent_dim_and_skipped_rows_noted(tmp_path):
    """Latent dims 2 and 4, half of each collapsed (KL 1e-6, drawn at the floor); a row whose
    kl_per_dim does not match its latent dim is skipped, and the figure says so."""
    rows = [{"latent_dim": d, "beta": 1.0, "kl_per_dim": [5.0] * (d // 2) + [1e-6] * (d - d // 2)}
            for d in (2, 4)]
    pixels = _read_png(plots.kl_per_unit(rows, tmp_path / "kl.png"))
    assert pixels.shape[:2] == (560, 800)
    rows.append({"latent_dim": 4, "beta": 1.0, "kl_per_dim": [1.0, 2.0]})  # wrong length: skipped
    pixels_skipped = _read_png(plots.kl_per_unit(rows, tmp_path / "kl_skipped.png"))
    assert (pixels_skipped != pixels).any()  # the note "1 of 3 rows skipped"


def test_kl_unit_curves_sort_average_seeds_and_raise_collapsed_units_to_the_floor():
    rows = [{"latent_dim": 3, "beta": 1.0, "kl_per_dim": [1e-7, 4.0, 2.0]},   # seed 0
            {"latent_dim": 3, "beta": 1.0, "kl_per_dim": [6.0, 0.0, 1e-5]},   # seed 1
            {"latent_dim": 3, "beta": 4.0, "kl_per_dim": [0.5, 0.0, 0.0]},
            {"latent_dim": 3, "beta": 4.0, "kl_per_dim": [0.5, float("nan"), 0.0]},  # skipped
            {"latent_dim": 3, "beta": 0.0, "kl_per_dim": [1.0, 1.0, 1.0]}]   # skipped
    curves, used = plots.kl_unit_curves(rows)
    assert used == 3 and set(curves) == {(3, 1.0), (3, 4.0)}
    # sorted per seed before the mean: (4, 2, 1e-7) and (6, 1e-5, 0) -> (5, 1 + 5e-6, 5e-8)
    np.testing.assert_allclose(curves[3, 1.0], [5.0, 1.0 + 5e-6, plots.KL_FLOOR])
    np.testing.assert_allclose(curves[3, 4.0], [0.5, plots.KL_FLOOR, plots.KL_FLOOR])


def test_units_by_layer_draws_each_seed_and_the_mean_per_depth(tmp_path):
    """Two depths, two models, two seeds each: every seed is a point, the mean a line; a
    changed seed changes what is drawn; a row with mismatched lists is skipped and noted."""
    def row(label, depth, seed):
        dims = [64, 32, 16, 8, 4][:depth]
        return {"label": label, "latent_dims": dims, "kl": [10.0 / (i + 1) + seed for i in range(depth)],
                "active_units": [d // (2 + seed) for d in dims]}
    rows = [row(label, depth, seed) for label in ("LVAE", "VAE") for depth in (2, 5) for seed in (0, 1)]
    path = plots.units_by_layer(rows, tmp_path / "units.png")
    assert _read_png(path).shape[:2] == (560, 800)
    digest = plots.read_content_digest(path)
    rows[0]["active_units"][0] = 0                             # seed 0 of LVAE, 2 layers, collapses
    assert plots.read_content_digest(plots.units_by_layer(rows, tmp_path / "u2.png")) != digest
    skipped = rows + [{"label": "VAE", "latent_dims": [64, 32], "kl": [1.0], "active_units": [1, 2]}]
    fig_path = plots.units_by_layer(skipped, tmp_path / "u3.png")
    assert plots.read_content_digest(fig_path) != plots.read_content_digest(tmp_path / "u2.png")
    assert _read_png(plots.units_by_layer([], tmp_path / "empty.png")).shape[:2] == (560, 800)


# ----------------------------------------------------------------------------- files and imports


def test_creates_parent_folders_and_overwrites_identically(tmp_path):
    path = tmp_path / "a" / "b" / "grid.png"
    images = np.random.default_rng(0).uniform(size=(6,) + GRAY_28)
    first = _read_png(plots.image_grid(images, str(path), ncols=3))
    second = _read_png(plots.image_grid(images, path, ncols=3))
    np.testing.assert_array_equal(first, second)
    assert sorted(p.name for p in path.parent.iterdir()) == ["grid.png"]   # no temporary files left


def test_thinned_ticks_are_evenly_spaced():
    assert plots._thinned(5) == [0, 1, 2, 3, 4]
    assert plots._thinned(15) == list(range(0, 15, 2))
    assert plots._thinned(21) == list(range(0, 21, 2))
    assert all(len(plots._thinned(n)) <= 11 for n in range(1, 200))


def test_a_figure_is_written_through_the_temporary_files_knows_by_its_writer(tmp_path,
                                                                               monkeypatch):
    """plots names its temporary file itself (it imports nothing of vaejax); the name must be
    `files.writer_temporary`'s, which drawing figures looks for after a kill."""
    from matplotlib.figure import Figure  # noqa: PLC0415

    from vaejax import files  # noqa: PLC0415

    written = []
    real_replace = plots.os.replace
    monkeypatch.setattr(plots.os, "replace",
                        lambda src, dst: (written.append(src), real_replace(src, dst)))
    path = plots._save(Figure(figsize=(1, 1)), tmp_path / "a.png")
    assert written == [files.writer_temporary(path)] and path.is_file()


def test_module_imports_neither_jax_nor_pyplot():
    # Loaded from its file, so that whatever vaejax/__init__.py imports does not count.
    source = pathlib.Path(plots.__file__)
    code = (
            "import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('plots_alone', {str(source)!r})\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "bad = sorted(m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'matplotlib.pyplot')))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_scale_formula():
    assert plots._scale(28, 28, 289, 289) == 2                 # MNIST tiles at 2x
    assert plots._scale(64, 64, 649, 649) == 1
    assert plots._scale(8, 8, 1000, 1000) == 2                 # capped by MAX_MOSAIC_PX // 1000
    assert plots._scale(100, 100, 5000, 5000) == 1             # never below 1
    assert math.isclose(plots._scale(16, 16, 50, 50), 4)


def test_nll_by_run_draws_one_row_per_finished_run(tmp_path):
    rows = [{"name": f"kind={k}", "test/nll": nll, "test/neg_elbo": nll + 4.0}
            for k, nll in (("iwae", 90.1), ("miwae", 91.3), ("piwae", 89.7))]
    rows.append({"name": "kind=ciwae", "test/nll": None, "test/neg_elbo": None})  # not finished
    pixels = _read_png(plots.nll_by_run(rows, tmp_path / "nll_by_run.png"))
    assert pixels.shape[:2] == (max(260, 120 + 34 * 3), 800)
    assert pixels.std() > 0  # something drawn
    pixels = _read_png(plots.nll_by_run([], tmp_path / "empty.png"))
    assert pixels.shape[:2] == (260, 800)


def test_compare_curves_draws_each_run_and_the_reference(tmp_path):
    runs = {name: [{"epoch": e, "val/neg_elbo": start - e} for e in range(1, 6)]
            for name, start in (("vae", 100.0), ("vampprior", 97.0))}
    runs["not started"] = []
    path = plots.compare_curves(runs, tmp_path / "curves.png", references={"paper": 85.57})
    pixels = _read_png(path)
    assert pixels.shape[:2] == plots.SWEEP_FIGURE_PX[::-1]
    # The reference line's colour (C3 after three runs) is drawn somewhere.
    red = np.all(np.abs(pixels[..., :3].astype(int) - (214, 39, 40)) < 30, axis=-1)
    assert red.sum() > 100
    empty = _read_png(plots.compare_curves({"a": []}, tmp_path / "empty.png"))
    assert empty.shape[:2] == plots.SWEEP_FIGURE_PX[::-1]


def test_compare_curves_draws_a_runs_reference_in_the_runs_colour(tmp_path):
    """A reference tied to run 'vampprior' (C1, orange) takes its colour, not a new one (C2,
    green): a run and its paper's number read as a pair."""
    runs = {name: [{"epoch": e, "val/neg_elbo": start - e} for e in range(1, 6)]
            for name, start in (("vae", 100.0), ("vampprior", 97.0))}

    def colour_pixels(pixels, rgb):
        return np.all(np.abs(pixels[..., :3].astype(int) - rgb) < 30, axis=-1).sum()

    orange, green = (255, 127, 14), (44, 160, 44)
    free = _read_png(plots.compare_curves(runs, tmp_path / "free.png", references={"paper": 85.0}))
    tied = _read_png(plots.compare_curves(runs, tmp_path / "tied.png", references={"paper": 85.0},
                                          reference_runs={"paper": "vampprior"}))
    assert colour_pixels(free, green) > 100 and colour_pixels(tied, green) < 10
    assert colour_pixels(tied, orange) > colour_pixels(free, orange) + 100  # the line across
    with pytest.raises(ValueError, match="reference_runs must map"):
        plots.compare_curves(runs, tmp_path / "bad.png", references={"paper": 85.0},
                             reference_runs={"paper": "no such run"})


def test_metrics_vs_strength_draws_a_panel_per_metric_and_method(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"method": method, "strength": strength, "seed": seed,
             "mig": rng.uniform(), "dci": rng.uniform()}
            for method in ("beta_vae", "factor_vae") for strength in (1.0, 4.0, 16.0) for seed in range(3)]
    path = plots.metrics_vs_strength(rows, tmp_path / "m.png", metrics=("mig", "dci"))
    assert _read_png(path).shape[:2] == (1200, 1600)
    digest = plots.read_content_digest(path)
    rows[0]["mig"] = float("nan")                               # left out, and the figure says so
    assert plots.read_content_digest(plots.metrics_vs_strength(rows, tmp_path / "m2.png",
                                                               metrics=("mig", "dci"))) != digest
    assert _read_png(plots.metrics_vs_strength([], tmp_path / "e.png", metrics=("mig",))).shape[:2] == (1200, 1600)


def test_rank_correlation_figure_draws_each_cell_and_leaves_nan_blank(tmp_path):
    """A changed cell changes what is drawn; a NaN cell (a constant metric) draws as a blank,
    not as a number."""
    from vaejax import disentanglement

    scores = np.array([[1, 2, 9], [2, 4, 8], [3, 6, 7], [4, 8, 1.0]])
    matrix = disentanglement.rank_correlation(scores)
    path = plots.rank_correlation(matrix, ["a", "b", "c"], tmp_path / "r.png")
    assert _read_png(path).shape[:2] == (560, 800)
    changed = matrix.copy()
    changed[0, 2] = changed[2, 0] = 0.5
    assert (plots.read_content_digest(plots.rank_correlation(changed, ["a", "b", "c"], tmp_path / "c.png"))
            != plots.read_content_digest(path))
    blank = matrix.copy()
    blank[0, 2] = blank[2, 0] = np.nan
    nan_path = plots.rank_correlation(blank, ["a", "b", "c"], tmp_path / "n.png")
    assert plots.read_content_digest(nan_path) not in (plots.read_content_digest(path),
                                                       plots.read_content_digest(tmp_path / "c.png"))
    with pytest.raises(ValueError, match="3 labels"):
        plots.rank_correlation(matrix[:2, :2], ["a", "b", "c"], tmp_path / "bad.png")
