"""Images with ground-truth factors, rendered procedurally: dSprites' factor grid, and a small
grid of squares for tests.

    grid = DSPRITES                                   # FactorGrid: names, sizes, values
    factors = grid.sample(np.random.default_rng(0), 64)      # int [64, 5], one index per factor
    images = render_dsprites(factors)                 # uint8 [64, 64, 64, 1], pixels 0 or 1
    codes_of = lambda f: encode(render_dsprites(f))   # what the BetaVAE/FactorVAE scores take

**dSprites** (Matthey et al. 2017) is the grid of shape (square, ellipse, heart) × 6 scales
in [0.5, 1] × 40 orientations in [0, 2π] × 32 × 32 positions in [0, 1]²: 737,280 binary
64 × 64 images. The original `.npz` file cannot be downloaded here, so these images are a
re-rendering on the same factor grid, not the original pixels: the grid and the factors'
values are the published ones; the sprites' outlines, size in pixels and margins are ours
(`render_dsprites`). Scores on these images are not comparable to scores on the original
file to the digit. `load_dsprites_npz(path)` reads the original file, when a user has it,
into the same (factors, images) form.

The grid keeps the published quirk (deepmind/dsprites-dataset issue 7): orientations 0 and 2π
are both in it and render the same image, and a symmetric shape repeats sooner (the square
every π/2, the ellipse every π). A metric that samples orientation sees such repeats as
different values of the factor.

**squares** is a 32 × 32 grid of one white square at 16 × 16 positions and 4 sizes (1,024
images), for tests that must run in seconds.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class FactorGrid:
    """The factors of a dataset: their names, number of values and values."""

    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values)

    @property
    def num_images(self) -> int:
        return math.prod(self.sizes)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` factor index vectors drawn uniformly from the grid: int [n, F]."""
        return np.stack([rng.integers(0, s, n) for s in self.sizes], axis=1)

    def all(self) -> np.ndarray:
        """Every point of the grid, the last factor fastest (the published order): int [N, F]."""
        return np.stack(np.meshgrid(*[np.arange(s) for s in self.sizes], indexing="ij"),
                        axis=-1).reshape(-1, len(self.sizes))

    def value(self, factors: np.ndarray) -> np.ndarray:
        """The factors' values (shape as an index, scale, radians, positions) of int [N, F]."""
        factors = np.asarray(factors)
        return np.stack([self.values[j][factors[:, j]] for j in range(len(self.sizes))], axis=1)


DSPRITES = FactorGrid(
    names=("shape", "scale", "orientation", "position_x", "position_y"),
    values=(np.arange(3.0), np.linspace(0.5, 1.0, 6), np.linspace(0.0, 2 * math.pi, 40),
            np.linspace(0.0, 1.0, 32), np.linspace(0.0, 1.0, 32)))
SHAPES = ("square", "ellipse", "heart")
SIZE = 64
SUPERSAMPLE = 4  # sub-pixels per pixel side: a pixel is on when over half of it is covered

SQUARES = FactorGrid(names=("position_x", "position_y", "size"),
                     values=(np.arange(16.0), np.arange(16.0), np.array([3.0, 5.0, 7.0, 9.0])))


def _inside(shape, u, v):
    """Whether the point (u, v), in the sprite's own frame (its extent about [−1, 1]²), is in
    the sprite of each `shape` index; arrays broadcast (jax.numpy)."""
    square = (jnp.abs(u) <= 0.8) & (jnp.abs(v) <= 0.8)
    ellipse = u**2 + (v / 0.5) ** 2 <= 1.0
    x, y = 1.15 * u, -1.15 * v + 0.15  # the heart curve (x² + y² − 1)³ ≤ x² y³, point down
    heart = (x**2 + y**2 - 1) ** 3 <= x**2 * y**3
    return jnp.where(shape == 0, square, jnp.where(shape == 1, ellipse, heart))


@jax.jit
def _render_values(values):
    """Factor values float [B, 5] -> images uint8 [B, 64, 64] (see `render_dsprites`)."""
    grid = (jnp.arange(SIZE * SUPERSAMPLE, dtype=jnp.float32) + 0.5) / (SIZE * SUPERSAMPLE)
    py, px = jnp.meshgrid(grid, grid, indexing="ij")

    def one(value):
        shape, scale, angle, x, y = value
        dx, dy = px - (0.2 + 0.6 * x), py - (0.2 + 0.6 * y)
        radius = 0.3 * scale
        u = (jnp.cos(angle) * dx - jnp.sin(angle) * dy) / radius  # rotated back by the angle
        v = (jnp.sin(angle) * dx + jnp.cos(angle) * dy) / radius
        covered = _inside(shape, u, v).reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE)
        return (covered.mean(axis=(1, 3)) > 0.5).astype(jnp.uint8)

    return jax.vmap(one)(values)


def render_dsprites(factors, *, chunk: int = 1024, progress=None) -> np.ndarray:
    """The images of dSprites factor indices int [N, 5]: uint8 [N, 64, 64, 1] of 0 and 1.

    A sprite of scale s spans 0.3 · s · 64 pixels from its centre to its edge (so scale 1
    is 38 pixels across); its centre moves over [0.2, 0.8] of the image as the position goes
    over [0, 1] (x to the right, y down); orientation turns it counter-clockwise. A pixel is
    on when over half of its 4 × 4 sub-pixels are inside the sprite. Jitted, `chunk` images
    at a time (the last chunk padded, so one program serves every size). `progress(done, n)`,
    when given, is called after each chunk with the number of images rendered so far."""
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != 5:
        raise ValueError(f"dSprites factors are int [N, 5] (shape, scale, orientation, x, y); "
                         f"got shape {factors.shape}.")
    values = DSPRITES.value(factors).astype(np.float32)
    n = values.shape[0]
    chunk = max(1, min(chunk, n))
    padded = np.concatenate([values, np.repeat(values[-1:], (-n) % chunk, axis=0)]) if n else values
    out = []
    for i in range(0, padded.shape[0], chunk):
        out.append(np.asarray(_render_values(padded[i:i + chunk])))
        if progress is not None:
            progress(min(i + chunk, n), n)
    return (np.concatenate(out)[:n] if out else np.zeros((0, SIZE, SIZE), np.uint8))[..., None]


def render_squares(factors) -> np.ndarray:
    """The images of `SQUARES` factor indices int [N, 3]: uint8 [N, 32, 32, 1] of 0 and 1, a
    square of side `size` pixels whose top-left corner is at (2 · y, 2 · x) clipped inside."""
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != 3:
        raise ValueError(f"squares factors are int [N, 3] (x, y, size); got shape {factors.shape}.")
    values = SQUARES.value(factors).astype(int)
    out = np.zeros((factors.shape[0], 32, 32, 1), np.uint8)
    for i, (x, y, size) in enumerate(values):
        top, left = min(2 * y, 32 - size), min(2 * x, 32 - size)
        out[i, top:top + size, left:left + size, 0] = 1
    return out


def load_dsprites_npz(path) -> tuple[np.ndarray, np.ndarray]:
    """The original file (dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz): (factors int
    [737280, 5], images uint8 [737280, 64, 64, 1]), its `latents_classes` without the
    constant colour column, in the same form as `DSPRITES.all()` and `render_dsprites`."""
    with np.load(path, allow_pickle=False, encoding="latin1") as data:
        missing = {"imgs", "latents_classes"} - set(data.files)
        if missing:
            raise ValueError(f"{path} is not the dSprites .npz: it lacks {sorted(missing)}.")
        images = np.asarray(data["imgs"], np.uint8)[..., None]
        classes = np.asarray(data["latents_classes"])[:, 1:]  # drop colour (one value)
    if classes.shape[1] != 5 or tuple(int(c) + 1 for c in classes.max(0)) != DSPRITES.sizes:
        raise ValueError(f"{path}: its factor grid {classes.max(0) + 1} is not dSprites' "
                         f"{DSPRITES.sizes}.")
    return classes.astype(np.int64), images


# -- as datasets (`data.name = "dsprites"` / "squares"; `vaejax.data.DATASETS`) ---------------

TEST_FRACTION, SPLIT_SEED = 0.1, 2017  # dSprites has no test split: a fixed 10% of the grid


def _split(factors: np.ndarray, images: np.ndarray) -> dict:
    """Train and test arrays of a factor grid: the test split is a fixed `TEST_FRACTION` of
    the images, and both splits are in a fixed random order (one permutation,
    `np.random.default_rng(SPLIT_SEED)`), so that the first N training images
    (`data.num_train`) and the last N (`data.num_validation`) are uniform samples of the grid,
    not a corner of it; pixels as 0 and 255 (uint8), so the usual preprocessing (dynamic
    binarization) keeps them exactly."""
    order = np.random.default_rng(SPLIT_SEED).permutation(factors.shape[0])
    test, train = order[:round(TEST_FRACTION * len(order))], order[round(TEST_FRACTION * len(order)):]
    train_images, test_images = images[train], images[test]  # copies: scaled in place below
    for pixels in (train_images, test_images):  # 3 GB of dSprites: no third copy for the x255
        np.multiply(pixels, np.uint8(255), out=pixels)
    return {"train_images": train_images, "train_factors": factors[train], "train_labels": None,
            "test_images": test_images, "test_factors": factors[test], "test_labels": None}


def dsprites_dataset(*, dsprites_npz: str = "", log=print) -> dict:
    """dSprites as a dataset: every image of the grid, re-rendered (`render_dsprites`; cached
    as <VAEJAX_CACHE>/dsprites-rendered.npz after the first time, with a progress line at most
    every 30 s while it renders), or the original file when
    `data.dsprites_npz` names it. 663,552 training and
    73,728 test images, 64 × 64 × 1, with their 5 factors."""
    from vaejax.data import cache  # noqa: PLC0415

    if dsprites_npz:
        factors, images = load_dsprites_npz(dsprites_npz)
        log(f"data: dsprites from {dsprites_npz} (the original file)")
        return _split(factors, images)
    path = cache.cache_dir() / "dsprites-rendered.npz"
    if path.exists():
        with np.load(path) as saved:
            log(f"data: dsprites re-rendered, from {path}")
            return _split(saved["factors"], saved["images"])
    factors = DSPRITES.all()
    log(f"data: rendering dsprites' {len(factors):,} images (the published factor grid, our "
        "pixels); cached in " + str(path))
    start, last = time.monotonic(), [time.monotonic()]

    def progress(done, n):
        now = time.monotonic()
        if now - last[0] >= 30 or done == n:
            last[0] = now
            rate = done / max(now - start, 1e-9)
            log(f"data: rendered {done:,}/{n:,} dsprites images ({done / n:.0%}), "
                f"{rate:,.0f} images/s, done in {(n - done) / rate / 60:.0f} min")

    images = render_dsprites(factors, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, factors=factors, images=images)
    tmp.replace(path)
    return _split(factors, images)


def squares_dataset() -> dict:
    """The squares grid as a dataset: 1,024 images 32 × 32 × 1 (922 train, 102 test) with
    their 3 factors (x, y, size): for tests that must run in seconds."""
    factors = SQUARES.all()
    return _split(factors, render_squares(factors))
