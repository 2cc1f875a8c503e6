"""PNG figures of vaejax: pure functions of numpy arrays and metric records.

No jax and no model code: callers decode images and compute metrics, and pass numpy
arrays (images as floats in [0, 1] of shape (N, H, W, C), C in {1, 3}) or plain dicts.
Figures are `matplotlib.figure.Figure` objects drawn on the Agg canvas, so no pyplot
global state is touched and the module works headless. Each function writes one RGB PNG
to `path` (parent folders are created; an existing file is replaced atomically) and
returns `pathlib.Path(path)`.

Pixel sizes are deterministic. Image mosaics put every decoded pixel on an s x s block
of output pixels, with the integer scale

    s = max(1, min(64 // max(H, W), 2048 // max(mosaic_h, mosaic_w)))

(28 x 28 MNIST tiles are drawn at s = 2), and fixed pixel margins around the mosaic;
each function's docstring gives its exact width and height. Line plots have a fixed
size: `TRAINING_CURVES_PX` and `SWEEP_FIGURE_PX` (width, height).
"""
from __future__ import annotations

import hashlib
import math
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullLocator
from PIL import Image, PngImagePlugin

DPI = 100
SEPARATOR_PX = 1                 # between tiles of a mosaic, in decoded pixels
PAIR_SEPARATOR_PX = 4            # between (input, reconstruction) row pairs
SEPARATOR_VALUE = 1.0            # white separators and blank tiles
TILE_TARGET_PX = 64              # tiles are upscaled by an integer to at most about this
MAX_MOSAIC_PX = 2048             # ... unless the mosaic would grow beyond this
PAD_PX = 8                       # margin around a plain mosaic
TITLE_BAND_PX = 32               # band above a mosaic that holds the title
TITLE_PX_PER_CHAR = 10           # a titled figure is at least this wide per title character
LABELLED_MARGINS_PX = {"left": 72, "right": 16, "bottom": 56}  # mosaics with axis ticks
TRAINING_CURVES_PX = (1500, 450)
SWEEP_FIGURE_PX = (800, 560)
SPARSE_POINTS = 30               # compare_curves: a series this short gets markers
TITLE_FONTSIZE = 11

_BETA_CMAP = ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, 256)), name="beta")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
_NO_DATA_COLOR = "0.45"

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------- image mosaics


def image_grid(images: np.ndarray, path: PathLike, *, ncols: int = 10, title: str | None = None) -> pathlib.Path:
    """Tiles N images row-major into ceil(N / ncols) rows of min(ncols, N) columns.

    images: (N, H, W, C) floats in [0, 1], C = 1 (drawn gray) or 3 (RGB); clipped to
    [0, 1], non-finite values drawn black. Tiles are separated by 1-pixel white lines.

    Pixel size, with R = ceil(N / ncols), K = min(ncols, N), mosaic_h = R*H + (R - 1),
    mosaic_w = K*W + (K - 1) and the scale s of the module docstring:
        width  = s * mosaic_w + 16,  widened to 10 * len(title) + 16 when titled;
        height = s * mosaic_h + 16,  plus 24 when titled (a 32-pixel title band on top).
    """
    images = _check_images(images, "images")
    ncols = _check_positive_int(ncols, "ncols")
    mosaic, _, _ = _mosaic(images, ncols=min(ncols, images.shape[0]))
    return _draw_mosaic(mosaic, images.shape, path, title=title)


def prior_samples(images: np.ndarray, path: PathLike, *, ncols: int = 10) -> pathlib.Path:
    """`image_grid` of decoded samples z ~ p(z), titled "Samples from the prior p(z)"."""
    return image_grid(images, path, ncols=ncols, title="Samples from the prior p(z)")


def class_samples(images: np.ndarray, path: PathLike, *, num_classes: int) -> pathlib.Path:
    """Samples of a conditional model, one row per class: row y holds x ~ p(x|z, y), z ~ p(z|y).

    images: (num_classes * ncols, H, W, C) floats in [0, 1], row-major (image y*ncols + k is
    sample k of class y). Rows are labelled with the class index.
    """
    images = _check_images(images, "images")
    num_classes = _check_positive_int(num_classes, "num_classes")
    if images.shape[0] % num_classes:
        raise ValueError(f"class_samples expects a multiple of num_classes = {num_classes} images, "
                         f"got {images.shape[0]}")
    mosaic, row_starts, _ = _mosaic(images, ncols=images.shape[0] // num_classes)
    h = images.shape[1]
    yticks = ([row_starts[y] + (h - 1) / 2 for y in range(num_classes)], [str(y) for y in range(num_classes)])
    return _draw_mosaic(mosaic, images.shape, path, title="Samples per class y: z ~ p(z|y), x ~ p(x|z, y)",
                        xticks=([], []), yticks=yticks, xlabel="", ylabel="class")


def layer_samples(images: np.ndarray, path: PathLike, *, layers: Sequence[str]) -> pathlib.Path:
    """Samples of a hierarchical prior, one row per layer: row i decodes z drawn from the top
    layer down to `layers[i]`, the layers below at their conditional means (what the layers
    down to it encode); column k shares its draws across rows.

    images: (len(layers) * ncols, H, W, C) floats in [0, 1], row-major.
    """
    images = _check_images(images, "images")
    if not layers or images.shape[0] % len(layers):
        raise ValueError(f"layer_samples expects a multiple of len(layers) = {len(layers)} images, "
                         f"got {images.shape[0]}")
    mosaic, row_starts, _ = _mosaic(images, ncols=images.shape[0] // len(layers))
    h = images.shape[1]
    yticks = ([row_starts[i] + (h - 1) / 2 for i in range(len(layers))], list(layers))
    return _draw_mosaic(mosaic, images.shape, path,
                        title="Prior samples down to each layer, the layers below at their means",
                        xticks=([], []), yticks=yticks, xlabel="", ylabel="sampled down to")


def reconstructions(inputs: np.ndarray, outputs: np.ndarray, path: PathLike, *, ncols: int = 10) -> pathlib.Path:
    """Inputs above their reconstructions: a row of inputs, then the row of their outputs.

    inputs, outputs: (N, H, W, C) floats in [0, 1] of equal shape. Examples fill
    P = ceil(N / ncols) row pairs of K = min(ncols, N) columns; rows within a pair are 1
    pixel apart and pairs 4 pixels apart. Pixel size, with mosaic_w = K*W + (K - 1) and
    mosaic_h = 2*P*H + P + 4*(P - 1):
        width  = max(s * mosaic_w + 16, 10 * 52 + 16),  height = s * mosaic_h + 40.
    """
    inputs = _check_images(inputs, "inputs")
    outputs = _check_images(outputs, "outputs")
    if inputs.shape != outputs.shape:
        raise ValueError(f"inputs and outputs must have the same shape, got {inputs.shape} and {outputs.shape}")
    n = inputs.shape[0]
    ncols = min(_check_positive_int(ncols, "ncols"), n)
    num_pairs = math.ceil(n / ncols)
    # Pair p holds a row of inputs, then the row of their outputs; missing tiles stay white.
    tiles_Px2xK = np.full((num_pairs, 2, ncols) + inputs.shape[1:], SEPARATOR_VALUE, dtype=np.float32)
    for i in range(n):
        p, k = divmod(i, ncols)
        tiles_Px2xK[p, 0, k], tiles_Px2xK[p, 1, k] = inputs[i], outputs[i]
    tiles = tiles_Px2xK.reshape((-1,) + inputs.shape[1:])
    row_gaps = [SEPARATOR_PX if r % 2 == 0 else PAIR_SEPARATOR_PX for r in range(2 * num_pairs - 1)]
    mosaic, _, _ = _mosaic(tiles, ncols=ncols, row_gaps=row_gaps)
    return _draw_mosaic(mosaic, inputs.shape, path, title="Reconstructions (top: input, bottom: reconstruction)")


def latent_manifold(images: np.ndarray, path: PathLike, *, grid_size: int, extent: float) -> pathlib.Path:
    """The 2-D latent manifold: images decoded from a grid of z over [-extent, extent]^2.

    images: (grid_size**2, H, W, C), row-major: row i, column j was decoded from
    z = (z1, z2) = (linspace(-extent, extent, grid_size)[j],
                    linspace(extent, -extent, grid_size)[i]),
    so z1 grows to the right and z2 decreases down the rows. Ticks show z1 and z2 (every
    k-th tile, k the smallest keeping at most 11). Pixel size, with mosaic side m = grid_size*(H or W) + grid_size - 1:
        width  = max(s * m_w + 88, 10 * 19 + 16),  height = s * m_h + 88.
    """
    images = _check_images(images, "images")
    grid_size = _check_positive_int(grid_size, "grid_size")
    extent = float(extent)
    if not (math.isfinite(extent) and extent > 0):
        raise ValueError(f"extent must be a positive finite number, got {extent}")
    if images.shape[0] != grid_size**2:
        raise ValueError(
                f"latent_manifold expects grid_size**2 = {grid_size**2} images for grid_size={grid_size}, "
                f"got {images.shape[0]} (images shape {images.shape})")
    mosaic, row_starts, col_starts = _mosaic(images, ncols=grid_size)
    h, w = images.shape[1:3]
    z1 = np.linspace(-extent, extent, grid_size)
    z2 = np.linspace(extent, -extent, grid_size)
    shown = _thinned(grid_size)
    xticks = ([col_starts[j] + (w - 1) / 2 for j in shown], [_fmt(z1[j], extent) for j in shown])
    yticks = ([row_starts[i] + (h - 1) / 2 for i in shown], [_fmt(z2[i], extent) for i in shown])
    return _draw_mosaic(
            mosaic, images.shape, path, title="2-D latent manifold",
            xticks=xticks, yticks=yticks, xlabel="$z_1$", ylabel="$z_2$")


def latent_traversals(
        images: np.ndarray, path: PathLike, *, num_dims: int, num_steps: int, values: Sequence[float],
        dims: Sequence[int] | None = None, row_labels: Sequence[str] | None = None,
        title: str = "Latent traversals (one latent varied per row)",
        xlabel: str = "latent value (other latents fixed)") -> pathlib.Path:
    """Latent traversals: row d varies one latent dimension over `values`, others fixed.

    images: (num_dims * num_steps, H, W, C), row-major: image d*num_steps + k was decoded
    with latent dims[d] set to values[k]. Rows are labelled "z_i" with i = dims[d]
    (default dims = range(num_dims), the 0-based index into z), or `row_labels[d]`; the
    bottom axis shows `values` (every k-th, at most 11). Pixel size, with mosaic_w = num_steps*W + num_steps - 1
    and mosaic_h = num_dims*H + num_dims - 1:
        width  = max(s * mosaic_w + 88, 10 * 45 + 16),  height = s * mosaic_h + 88.
    """
    images = _check_images(images, "images")
    num_dims = _check_positive_int(num_dims, "num_dims")
    num_steps = _check_positive_int(num_steps, "num_steps")
    if images.shape[0] != num_dims * num_steps:
        raise ValueError(
                f"latent_traversals expects num_dims * num_steps = {num_dims} * {num_steps} = "
                f"{num_dims * num_steps} images, got {images.shape[0]} (images shape {images.shape})")
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape[0] != num_steps:
        raise ValueError(f"values must have num_steps = {num_steps} entries, got {values.shape[0]}")
    dims = list(range(num_dims)) if dims is None else [int(d) for d in dims]
    if len(dims) != num_dims:
        raise ValueError(f"dims must have num_dims = {num_dims} entries, got {len(dims)}")
    mosaic, row_starts, col_starts = _mosaic(images, ncols=num_steps)
    h, w = images.shape[1:3]
    scale_ref = float(np.max(np.abs(values[np.isfinite(values)]), initial=1.0))
    shown = _thinned(num_steps)
    xticks = ([col_starts[k] + (w - 1) / 2 for k in shown], [_fmt(values[k], scale_ref) for k in shown])
    labels = [f"$z_{{{d}}}$" for d in dims] if row_labels is None else [str(t) for t in row_labels]
    if len(labels) != num_dims:
        raise ValueError(f"row_labels must have num_dims = {num_dims} entries, got {len(labels)}")
    yticks = ([row_starts[d] + (h - 1) / 2 for d in range(num_dims)], labels)
    return _draw_mosaic(mosaic, images.shape, path, title=title, xticks=xticks, yticks=yticks,
                        xlabel=xlabel, ylabel="")


# ----------------------------------------------------------------------------- training curves


def training_curves(records: Iterable[Mapping[str, Any]], path: PathLike) -> pathlib.Path:
    """Per-epoch curves from metrics.jsonl records: -ELBO, rate and distortion, train and val.

    records: dicts with "epoch" and any of "train/neg_elbo", "val/neg_elbo", "train/rate",
    "val/rate", "train/distortion", "val/distortion" (nats per example). Missing, None
    and non-finite values are skipped; records without an epoch are skipped; when an
    epoch repeats (a resumed run), its last record wins. Size: TRAINING_CURVES_PX.
    """
    records = list(records)
    panels = [
            ("neg_elbo", "Negative ELBO", "−ELBO (nats per example)"),
            ("rate", "Rate: KL(q(z|x) || p(z))", "rate (KL, nats)"),
            ("distortion", "Distortion: −E_q[log p(x|z)]", "distortion (nats)"),
    ]
    fig = _new_figure(*TRAINING_CURVES_PX, layout="constrained")
    axes = fig.subplots(1, len(panels))
    for ax, (metric, title, ylabel) in zip(axes, panels):
        drawn = False
        for split, style in (("train", dict(color="C0", linestyle="-")), ("val", dict(color="C1", linestyle="--"))):
            epochs, ys = _series(records, f"{split}/{metric}")
            if epochs.size == 0:
                continue
            marker = "o" if epochs.size <= 50 else None
            ax.plot(epochs, ys, marker=marker, markersize=3, label=split, **style)
            drawn = True
        ax.set_title(title, fontsize=TITLE_FONTSIZE)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(loc="best", fontsize=9)
        else:
            _no_data(ax, "no data yet")
    return _save(fig, path)


def compare_curves(runs: Mapping[str, Iterable[Mapping[str, Any]]], path: PathLike, *,
                   key: str = "val/neg_elbo", ylabel: str = "validation −ELBO (nats per example)",
                   references: Mapping[str, float] | None = None,
                   reference_runs: Mapping[str, str] | None = None, title: str | None = None,
                   log_epochs: bool = False) -> pathlib.Path:
    """One metric against epoch for several runs, one line each (their metrics.jsonl records,
    or a few evaluated epochs), and optional horizontal reference lines ({label: value}, e.g.
    a paper's number). `reference_runs` ({reference label: run name}) draws a reference in
    its run's colour, so that a run and its target read as a pair; the others get colours
    of their own.

    Missing and non-finite values are skipped; a repeated epoch keeps its last record. A
    series of at most SPARSE_POINTS points is drawn with markers and fits the axes whole;
    longer ones fit up to their 0.9 quantile (the first epochs' spike would flatten the
    rest). `log_epochs`: a log epoch axis. Size: SWEEP_FIGURE_PX, the legend below the axes.
    """
    references, reference_runs = references or {}, reference_runs or {}
    if not (set(reference_runs) <= set(references) and set(reference_runs.values()) <= set(runs)):
        raise ValueError(f"reference_runs must map reference labels {sorted(references)} "
                         f"to run names {sorted(runs)}, got {dict(reference_runs)}")
    fig = _new_figure(*SWEEP_FIGURE_PX, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title or f"{key} per epoch", fontsize=TITLE_FONTSIZE)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    series = {name: _series(list(records), key) for name, records in runs.items()}
    drawn = [name for name, (epochs, _) in series.items() if epochs.size]
    sparse = all(series[name][0].size <= SPARSE_POINTS for name in drawn)
    for i, (name, (epochs, ys)) in enumerate(series.items()):
        if epochs.size:
            ax.plot(epochs, ys, color=f"C{i % 10}", label=name,
                    marker="o" if epochs.size <= SPARSE_POINTS else None, markersize=4)
    run_colour = {name: f"C{i % 10}" for i, name in enumerate(runs)}
    for j, (label, value) in enumerate(references.items()):
        run = reference_runs.get(label)
        colour = run_colour[run] if run is not None else f"C{(len(runs) + j) % 10}"
        ax.axhline(value, color=colour, linestyle=":", linewidth=1.5, label=label)
    if log_epochs:
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    if drawn:
        ys = np.concatenate([series[name][1] for name in drawn])
        low = min([float(np.min(ys))] + list(references.values()))
        high = float(np.max(ys)) if sparse else float(np.quantile(ys, 0.9))
        ax.set_ylim(*_padded_range(np.array([low, high])))
        fig.legend(loc="outside lower center", ncol=min(2, len(drawn) + len(references)),
                   fontsize=9)
    else:
        _no_data(ax, "no data yet")
    return _save(fig, path)


# ----------------------------------------------------------------------------- sweep figures


def rate_distortion(rows: Iterable[Mapping[str, Any]], path: PathLike) -> pathlib.Path:
    """The rate-distortion plane of a sweep (Alemi et al. 2018, "Fixing a Broken ELBO").

    rows: dicts with "latent_dim", "beta", "test/rate", "test/distortion" (nats per
    example); rows with a missing, None or non-finite value, or beta <= 0, are skipped
    (their count is noted in the figure). x = rate R, y = distortion D; colour = beta
    (log scale, colourbar), marker = latent dim (legend, below the axes). Dashed gray lines are
    D + R = -ELBO for the best, the median and the worst -ELBO among the runs (values
    in the legend).
    Size: SWEEP_FIGURE_PX.
    """
    rows = list(rows)
    valid = _valid_rows(rows, ("latent_dim", "beta", "test/rate", "test/distortion"))
    fig = _new_figure(*SWEEP_FIGURE_PX, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Rate–distortion plane (test set)", fontsize=TITLE_FONTSIZE)
    ax.set_xlabel("rate R = KL(q(z|x) || p(z)) (nats)")
    ax.set_ylabel("distortion D = −E_q[log p(x|z)] (nats)")
    if not valid:
        _no_data(ax, "no complete rows to plot")
        return _save(fig, path)
    rate = np.array([r["test/rate"] for r in valid])
    distortion = np.array([r["test/distortion"] for r in valid])
    beta = np.array([r["beta"] for r in valid])
    latent_dim = np.array([int(r["latent_dim"]) for r in valid])
    norm = _beta_norm(beta)
    handles = []
    for i, d in enumerate(np.unique(latent_dim)):
        sel = latent_dim == d
        marker = _MARKERS[i % len(_MARKERS)]
        ax.scatter(rate[sel], distortion[sel], c=beta[sel], cmap=_BETA_CMAP, norm=norm, marker=marker,
                   s=45, edgecolors="black", linewidths=0.4, zorder=3)
        handles.append(Line2D([], [], marker=marker, linestyle="", markerfacecolor="0.75", markeredgecolor="black",
                              markersize=7, label=f"latent dim {d}"))
    _beta_colorbar(fig, ax, norm, beta)

    # Limits from the data (rate from 0), then iso-ELBO diagonals that must not move them.
    x0, x1 = _padded_range(np.append(rate, 0.0), pad=(0.03, 0.08))
    y0, y1 = _padded_range(distortion)
    totals = np.sort(rate + distortion)
    levels = np.unique(np.round([totals[0], np.median(totals), totals[-1]], 6))
    xs = np.array([x0, x1])
    for level in levels:
        ax.plot(xs, level - xs, linestyle="--", color="0.6", linewidth=1, zorder=1)
    levels_text = ", ".join(f"{level:.4g}" for level in levels)
    iso_label = f"R + D = −ELBO of the best, median, worst run: {levels_text}"
    handles.append(Line2D([], [], linestyle="--", color="0.6", label=iso_label))
    # Below the axes, where it cannot hide a run (inside, "upper right" hid the worst one).
    # At most three entries a row: five latent dims and the -ELBO line in one row ran off
    # both sides of the figure.
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=8)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.grid(True, alpha=0.3)
    _note_skipped(fig, len(rows) - len(valid), len(rows))
    return _save(fig, path)


def nll_vs_latent_dim(rows: Iterable[Mapping[str, Any]], path: PathLike) -> pathlib.Path:
    """Test NLL (nats) against latent dim (log2 axis): one line per beta, mean over seeds.

    rows: dicts with "latent_dim", "beta", "test/nll"; rows with a missing, None or
    non-finite value, beta <= 0 or latent_dim < 1 are skipped. Error bars span the min
    and max over the rows (seeds) of each (beta, latent_dim). Size: SWEEP_FIGURE_PX.
    """
    rows = list(rows)
    valid = [r for r in _valid_rows(rows, ("latent_dim", "beta", "test/nll")) if r["latent_dim"] >= 1]
    fig = _new_figure(*SWEEP_FIGURE_PX, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Test NLL vs latent dimension (mean over seeds; bars: min to max)", fontsize=TITLE_FONTSIZE)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("test NLL (nats per example)")
    if not valid:
        _no_data(ax, "no complete rows to plot")
        return _save(fig, path)
    betas = np.array([r["beta"] for r in valid])
    norm = _beta_norm(betas)
    for beta in np.unique(betas):
        x, mean, lo, hi = _group_stats([r for r in valid if r["beta"] == beta], "latent_dim", "test/nll")
        ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], marker="o", markersize=4, capsize=3,
                    color=_BETA_CMAP(norm(beta)), label=f"β = {beta:g}")
    dims = np.unique([int(r["latent_dim"]) for r in valid])
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    _note_skipped(fig, len(rows) - len(valid), len(rows))
    return _save(fig, path)


def nll_by_run(rows: Iterable[Mapping[str, Any]], path: PathLike) -> pathlib.Path:
    """Test NLL and test negative ELBO (nats) of each run, one row per run, best NLL at the top:
    a sweep over anything (objectives, models) compared at a glance; the gap between the two
    markers is the bound's looseness.

    rows: dicts with "name", "test/nll" and optionally "test/neg_elbo"; rows without a
    finite NLL are skipped. Width SWEEP_FIGURE_PX[0]; height grows with the number of runs.
    """
    rows = list(rows)
    valid = [(str(r.get("name")), _as_float(r.get("test/nll")), _as_float(r.get("test/neg_elbo")))
             for r in rows]
    valid = sorted([v for v in valid if v[1] is not None], key=lambda v: -v[1])
    fig = _new_figure(SWEEP_FIGURE_PX[0], max(260, 120 + 34 * len(valid)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Test NLL (IWAE estimate) and test -ELBO per run", fontsize=TITLE_FONTSIZE)
    ax.set_xlabel("nats per example (lower is better)")
    if not valid:
        _no_data(ax, "no finished runs to plot")
        return _save(fig, path)
    y = np.arange(len(valid))
    nll = np.array([v[1] for v in valid])
    ax.scatter(nll, y, marker="o", color="C0", zorder=3, label="test NLL")
    for yi, value in zip(y, nll):
        ax.annotate(f"{value:.2f}", (value, yi), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=8, color="C0")
    elbo = [(yi, v[2]) for yi, v in zip(y, valid) if v[2] is not None]
    if elbo:
        ax.scatter([e for _, e in elbo], [yi for yi, _ in elbo], marker="s", color="C1", zorder=3,
                   label="test -ELBO")
    ax.set_yticks(y, [v[0] for v in valid], fontsize=8)
    ax.set_ylim(-0.6, len(valid) - 0.4)
    ax.grid(True, axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize=9)  # outside: it hides no marker
    _note_skipped(fig, len(rows) - len(valid), len(rows))
    return _save(fig, path)


def active_units_vs_beta(rows: Iterable[Mapping[str, Any]], path: PathLike) -> pathlib.Path:
    """Active units of each (latent dim, beta), as a table of coloured cells: one row per
    latent dim, one column per beta (ascending); each cell reads "mean/dim" over the rows
    (seeds) of that pair, with "(min–max)" when they differ, and its colour is the fraction
    of units active (0 to 1). A table, not lines: the lines of latent dims 2 to 50 sat far
    apart on one axis and a lost unit of a small one did not show.

    rows: dicts with "latent_dim", "beta", "active_units"; rows with a missing, None or
    non-finite value, beta <= 0 or latent_dim < 1 are skipped. Size: SWEEP_FIGURE_PX.
    """
    rows = list(rows)
    valid = [r for r in _valid_rows(rows, ("latent_dim", "beta", "active_units"))
             if r["latent_dim"] >= 1]
    fig = _new_figure(*SWEEP_FIGURE_PX, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Active units (mean over seeds / latent dim; min–max when seeds differ)",
                 fontsize=TITLE_FONTSIZE)
    ax.set_xlabel("β (weight of the KL term)")
    ax.set_ylabel("latent dim")
    if not valid:
        _no_data(ax, "no complete rows to plot")
        return _save(fig, path)
    dims = np.unique([int(r["latent_dim"]) for r in valid])
    betas = np.unique([r["beta"] for r in valid])
    fraction = np.full((dims.size, betas.size), np.nan)
    for i, d in enumerate(dims):
        x, mean, lo, hi = _group_stats([r for r in valid if int(r["latent_dim"]) == d],
                                       "beta", "active_units")
        for b, m, low, high in zip(x, mean, lo, hi):
            j = int(np.searchsorted(betas, b))
            fraction[i, j] = m / d
            ax.text(j, i, _units_text(m, low, high, d), ha="center", va="center", fontsize=9,
                    color="white" if fraction[i, j] < 0.45 else "black")
    image = ax.imshow(np.ma.masked_invalid(fraction), cmap=_BETA_CMAP, vmin=0.0, vmax=1.0,
                      aspect="auto", origin="lower")
    ax.set_xticks(np.arange(betas.size), [f"{b:g}" for b in betas])
    ax.set_yticks(np.arange(dims.size), [str(d) for d in dims])
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label("fraction of units active", fontsize=10)
    _note_skipped(fig, len(rows) - len(valid), len(rows))
    return _save(fig, path)


def _units_text(mean: float, lo: float, hi: float, dim: int) -> str:
    """ "8/10", or "7.67/10" over "(7–8)" when the seeds differ."""
    text = f"{mean:.3g}/{dim}"
    return text if lo == hi else f"{text}\n({lo:g}–{hi:g})"


KL_FLOOR = 1e-3  # nats: kl_per_unit draws smaller KLs (collapsed units) at this value


def kl_per_unit(rows: Iterable[Mapping[str, Any]], path: PathLike) -> pathlib.Path:
    """Each unit's KL(q(z_i|x) || p(z_i)) on the test set, sorted from largest: one panel per
    latent dim, one line per beta (mean over seeds of the sorted values). Where a line
    drops to the floor, units have collapsed to the prior; how many stay above it, and how
    that moves with beta, is where posterior collapse begins.

    rows: dicts with "latent_dim", "beta" and "kl_per_dim" (a list of latent_dim nats per
    example, from results.json); rows without it are skipped. y: log scale, values below
    KL_FLOOR drawn at KL_FLOOR. Size: SWEEP_FIGURE_PX wide, panels side by side.
    """
    rows = list(rows)
    curves, used = kl_unit_curves(rows)
    dims = sorted({d for d, _ in curves})
    fig = _new_figure(*SWEEP_FIGURE_PX, layout="constrained")
    fig.suptitle("KL per latent unit, sorted (test set; mean over seeds)", fontsize=TITLE_FONTSIZE)
    if not curves:
        _no_data(fig.add_subplot(), "no rows with kl_per_dim to plot")
        return _save(fig, path)
    axes = fig.subplots(1, len(dims), sharey=True, squeeze=False)[0]
    betas = np.array(sorted({b for _, b in curves}))
    norm = _beta_norm(betas)
    top = max(float(curve.max()) for curve in curves.values())
    for ax, d in zip(axes, dims):
        for beta in betas:
            if (d, beta) in curves:
                ax.plot(np.arange(1, d + 1), curves[d, beta], marker="o", markersize=3,
                        linewidth=1.2, color=_BETA_CMAP(norm(beta)))
        ax.set_yscale("log")
        ax.set_ylim(KL_FLOOR * 0.7, top * 1.5)
        ax.set_xlim(0.5, d + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.set_title(f"latent dim {d}", fontsize=9)
        ax.set_xlabel("unit (by KL)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("KL per unit (nats per example)")
    _beta_colorbar(fig, list(axes), norm, betas)
    _note_skipped(fig, len(rows) - used, len(rows))
    return _save(fig, path)


def kl_unit_curves(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[tuple[int, float], np.ndarray], int]:
    """kl_per_unit's lines: {(latent_dim, beta): (latent_dim,) nats per example}, each row's
    kl_per_dim sorted from largest, averaged over the rows (seeds) of that setting, and
    raised to KL_FLOOR (a collapsed unit's KL is ~0, below any log axis); and how many rows
    were used (those with a positive beta and a finite kl_per_dim of latent_dim values)."""
    sorted_kls: dict[tuple[int, float], list[np.ndarray]] = {}
    for row in rows:
        beta, dim = _as_float(row.get("beta")), _as_float(row.get("latent_dim"))
        kl = row.get("kl_per_dim")
        if beta is None or beta <= 0 or dim is None or kl is None or len(kl) != int(dim):
            continue
        kl = np.asarray(kl, dtype=np.float64)
        if np.isfinite(kl).all():
            sorted_kls.setdefault((int(dim), beta), []).append(np.sort(kl)[::-1])
    curves = {key: np.maximum(np.mean(kls, axis=0), KL_FLOOR) for key, kls in sorted_kls.items()}
    return curves, sum(len(kls) for kls in sorted_kls.values())


# ----------------------------------------------------------------------------- helpers


def _check_images(images: Any, name: str) -> np.ndarray:
    """Validated (N, H, W, C) float32 copy in [0, 1]; non-finite values become 0 (black)."""
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, H, W, C) (rank 4), got rank {x.ndim} with shape {x.shape}")
    if x.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must have C = 1 (gray) or 3 (RGB) channels in the last axis, got shape {x.shape}")
    if min(x.shape[:3]) == 0:
        raise ValueError(f"{name} must hold at least one non-empty image, got shape {x.shape}")
    if x.dtype == bool:
        x = x.astype(np.float32)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be floats in [0, 1], got dtype {x.dtype} (divide uint8 images by 255)")
    x = np.nan_to_num(x.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(x, 0.0, 1.0)


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _mosaic(tiles_NxHxWxC: np.ndarray, *, ncols: int, row_gaps: Sequence[int] | None = None):
    """Row-major mosaic of tiles with white separators; returns (mosaic, row starts, col starts).

    Rows are SEPARATOR_PX apart unless row_gaps (length nrows - 1) says otherwise; a short
    last row is padded with white.
    """
    n, h, w, c = tiles_NxHxWxC.shape
    nrows = math.ceil(n / ncols)
    gaps = [SEPARATOR_PX] * (nrows - 1) if row_gaps is None else list(row_gaps)
    assert len(gaps) == nrows - 1, (len(gaps), nrows)
    row_starts = np.concatenate([[0], np.cumsum(np.asarray(gaps, dtype=int) + h)]).astype(int)
    col_starts = np.arange(ncols) * (w + SEPARATOR_PX)
    mosaic = np.full((row_starts[-1] + h, col_starts[-1] + w, c), SEPARATOR_VALUE, dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, ncols)
        mosaic[row_starts[r]:row_starts[r] + h, col_starts[k]:col_starts[k] + w] = tiles_NxHxWxC[i]
    return mosaic, row_starts, col_starts


def _scale(tile_h: int, tile_w: int, mosaic_h: int, mosaic_w: int) -> int:
    """Integer upscaling of decoded pixels (formula in the module docstring)."""
    return max(1, min(TILE_TARGET_PX // max(tile_h, tile_w), MAX_MOSAIC_PX // max(mosaic_h, mosaic_w)))


def _draw_mosaic(mosaic, images_shape, path, *, title, xticks=None, yticks=None, xlabel=None, ylabel=None):
    """Draws one mosaic with a single imshow at an integer scale and fixed pixel margins."""
    labelled = xticks is not None or yticks is not None
    s = _scale(images_shape[1], images_shape[2], mosaic.shape[0], mosaic.shape[1])
    content_w, content_h = s * mosaic.shape[1], s * mosaic.shape[0]
    if labelled:
        left, right, bottom = (LABELLED_MARGINS_PX[k] for k in ("left", "right", "bottom"))
    else:
        left = right = bottom = PAD_PX
    top = TITLE_BAND_PX if title else PAD_PX
    width = left + content_w + right
    if title:  # wide enough for the title; the mosaic stays centred between its margins
        extra = max(0, TITLE_PX_PER_CHAR * len(title) + 2 * PAD_PX - width)
        left, right, width = left + extra // 2, right + extra - extra // 2, width + extra
    height = top + content_h + bottom

    fig = _new_figure(width, height)
    fw, fh = fig.bbox.width, fig.bbox.height
    ax = fig.add_axes((left / fw, (fh - top - content_h) / fh, content_w / fw, content_h / fh))
    if mosaic.shape[-1] == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    else:
        ax.imshow(mosaic, interpolation="nearest", aspect="auto")
    if labelled:
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xticks(*(xticks or ([], [])))
        ax.set_yticks(*(yticks or ([], [])))
        ax.tick_params(length=3, labelsize=8)
        ax.set_xlabel(xlabel or "")
        ax.set_ylabel(ylabel or "")
    else:
        ax.set_axis_off()
    if title:
        fig.text(0.5, 1.0 - (top / 2) / fh, title, ha="center", va="center", fontsize=TITLE_FONTSIZE)
    return _save(fig, path)


def units_by_layer(rows: Iterable[Mapping[str, Any]], path: PathLike) -> pathlib.Path:
    """What each stochastic layer of a hierarchy holds: the fraction of its units active (top)
    and its KL(q || p) in nats per example (bottom), against the layer (1 = next to x), one
    column of panels per depth. Each model is a line through the mean over its rows (seeds),
    each row a point, so a seed that collapsed where the others did not stands apart.

    rows: dicts with "label" (the model), "active_units" and "latent_dims" (one int per layer,
    bottom first) and "kl" (one float per layer); a row whose lists are missing or of unequal
    length is skipped. Size: SWEEP_FIGURE_PX.
    """
    rows = list(rows)
    valid = [r for r in rows
             if all(isinstance(r.get(k), Sequence) for k in ("active_units", "latent_dims", "kl"))
             and len(r["active_units"]) == len(r["latent_dims"]) == len(r["kl"]) >= 1]
    fig = _new_figure(*SWEEP_FIGURE_PX, layout="constrained")
    fig.suptitle("Per stochastic layer (points: seeds; lines: their mean)", fontsize=TITLE_FONTSIZE)
    if not valid:
        _no_data(fig.add_subplot(), "no rows with per-layer results to plot")
        return _save(fig, path)
    depths = sorted({len(r["latent_dims"]) for r in valid})
    labels = list(dict.fromkeys(r["label"] for r in valid))
    axes = fig.subplots(2, len(depths), squeeze=False, sharex="col")
    for column, depth in enumerate(depths):
        top, bottom = axes[0, column], axes[1, column]
        for i, label in enumerate(labels):
            mine = [r for r in valid if r["label"] == label and len(r["latent_dims"]) == depth]
            if not mine:
                continue
            layers = np.arange(1, depth + 1)
            fraction = np.array([np.asarray(r["active_units"], float) / np.asarray(r["latent_dims"])
                                 for r in mine])
            kl = np.array([np.asarray(r["kl"], float) for r in mine])
            for ax, values in ((top, fraction), (bottom, kl)):
                ax.plot(layers, values.mean(axis=0), color=f"C{i % 10}", marker="o",
                        markersize=4, label=label)
                ax.scatter(np.repeat(layers[None], len(mine), 0).ravel(), values.ravel(),
                           color=f"C{i % 10}", s=10, alpha=0.5)
        top.set_title(f"{depth} layers", fontsize=9)
        top.set_ylim(-0.05, 1.05)
        bottom.set_xlabel("layer (1 = next to x)", fontsize=8)
        bottom.set_xticks(np.arange(1, depth + 1))
        for ax in (top, bottom):
            ax.tick_params(labelsize=8)
            ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel("fraction of units active", fontsize=9)
    axes[1, 0].set_ylabel("KL (nats per example)", fontsize=9)
    handles = [Line2D([], [], color=f"C{i % 10}", marker="o", label=label)
               for i, label in enumerate(labels)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(labels)), fontsize=9)
    _note_skipped(fig, len(rows) - len(valid), len(rows))
    return _save(fig, path)


STUDY_FIGURE_PX = (1600, 1200)


def metrics_vs_strength(rows: Iterable[Mapping[str, Any]], path: PathLike, *,
                        metrics: Sequence[str]) -> pathlib.Path:
    """A disentanglement study at a glance (Locatello et al. 2019, figure 1's layout): one
    panel per (metric, method), each metric a row and each method a column, the metric against
    the method's strength on a log axis, every model (seed) a point and a line through the
    mean over seeds. Where the points of one strength spread as far as the line moves across
    strengths, the seed matters as much as the setting.

    rows: dicts with "method", "strength" (> 0) and each metric; a model's missing or
    non-finite metric is left out of that panel, and the figure says how many values were.
    Size: STUDY_FIGURE_PX.
    """
    rows = list(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows if r.get("method") is not None))
    fig = _new_figure(*STUDY_FIGURE_PX, layout="constrained")
    fig.suptitle("Each metric against each method's strength (points: seeds; lines: their mean)",
                 fontsize=TITLE_FONTSIZE)
    if not methods or not metrics:
        _no_data(fig.add_subplot(), "no models to plot")
        return _save(fig, path)
    axes = fig.subplots(len(metrics), len(methods), squeeze=False, sharey="row")
    skipped = 0
    for j, method in enumerate(methods):
        mine = [r for r in rows if r.get("method") == method]
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            valid = [v for v in _valid_rows(mine, ("strength", metric)) if v["strength"] > 0]
            skipped += len(mine) - len(valid)
            if valid:
                x = np.array([r["strength"] for r in valid])
                y = np.array([r[metric] for r in valid])
                ax.scatter(x, y, s=10, alpha=0.6, color=f"C{j % 10}")
                strengths = np.unique(x)
                ax.plot(strengths, [y[x == v].mean() for v in strengths], color=f"C{j % 10}")
                ax.set_xscale("log")
                ax.set_xticks(strengths, [f"{v:g}" for v in strengths])
                ax.xaxis.set_minor_locator(NullLocator())
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
            if i == 0:
                ax.set_title(method, fontsize=9)
            if j == 0:
                ax.set_ylabel(metric, fontsize=8)
    _note_skipped(fig, skipped, len(rows) * len(metrics))
    return _save(fig, path)


def rank_correlation(matrix, labels: Sequence[str], path: PathLike, *,
                     title: str = "Rank correlation between the metrics (Spearman, over all models)"
                     ) -> pathlib.Path:
    """A square matrix of correlations in [-1, 1] (`disentanglement.rank_correlation`), one
    row and column per label, each cell coloured (red positive, blue negative) and printed to
    two decimals; NaN cells (a constant metric) are blank. Size: SWEEP_FIGURE_PX."""
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"matrix of shape {matrix.shape} for {len(labels)} labels")
    fig = _new_figure(*SWEEP_FIGURE_PX, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=TITLE_FONTSIZE)
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if np.isfinite(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if abs(matrix[i, j]) > 0.6 else "black")
    ax.set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(labels)), labels, fontsize=8)
    fig.colorbar(image, ax=ax).set_label("rank correlation", fontsize=9)
    return _save(fig, path)


def _new_figure(width_px: int, height_px: int, **kwargs) -> Figure:
    # Older matplotlib (pyproject allows >= 3.8) truncates width_inches * dpi to an int,
    # and 0.29 * 100 = 28.999...; the 0.01-pixel nudge keeps the canvas width_px x height_px.
    return Figure(figsize=((width_px + 0.01) / DPI, (height_px + 0.01) / DPI), dpi=DPI, facecolor="white", **kwargs)


# The PNG text chunk that holds `content_digest` of the figure drawn.
CONTENT_KEY = "vaejax:content"


def _numbers(values) -> str:
    """Numbers as text at 6 significant digits: the same data from another platform's floats
    or another matplotlib's transforms reads the same."""
    values = np.asarray(values, dtype=float).reshape(-1)
    return ",".join(f"{v:.6g}" for v in values)


def content_digest(fig: Figure) -> str:
    """sha256 of what `fig` shows, not of its pixels: each axes' title, labels, lines (data
    and label), collections (points), patches (bars, in data units), images (arrays) and
    texts, and the figure's texts. Another matplotlib or font renders other pixels from the
    same content, and the digest is the same; a changed number changes it."""
    parts = [f"text:{t.get_text()}" for t in fig.texts]
    for ax in fig.axes:
        parts += [f"axes:{ax.get_title()}|{ax.get_xlabel()}|{ax.get_ylabel()}"]
        parts += [f"line:{line.get_label()}:{_numbers(line.get_xydata())}" for line in ax.get_lines()]
        parts += [f"points:{_numbers(c.get_offsets())}" for c in ax.collections]
        parts += [f"patch:{_numbers(patch.get_patch_transform().transform(patch.get_path().vertices))}"
                  for patch in ax.patches]
        parts += [f"image:{_numbers(image.get_array())}" for image in ax.get_images()]
        parts += [f"text:{t.get_text()}" for t in ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            parts += [f"legend:{t.get_text()}" for t in legend.get_texts()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def read_content_digest(path: PathLike) -> str | None:
    """The `content_digest` a PNG written here carries (None for a PNG without one)."""
    with Image.open(path) as image:
        return getattr(image, "text", {}).get(CONTENT_KEY)


def _save(fig: Figure, path: PathLike) -> pathlib.Path:
    """Renders with Agg and writes an RGB PNG via a temporary file, so readers never see half a
    file. The PNG carries `content_digest(fig)` (`read_content_digest`)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    info = PngImagePlugin.PngInfo()
    info.add_text(CONTENT_KEY, content_digest(fig))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # vaejax.files.writer_temporary's
    try:  # name (plots imports nothing of vaejax), so a killed writer's file is found by its pid
        Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _thinned(n: int, most: int = 11) -> list[int]:
    """Every k-th index of range(n) from 0, with the smallest k that keeps at most `most`."""
    step = max(1, math.ceil((n - 1) / (most - 1)))
    return list(range(0, n, step))


def _fmt(value: float, reference: float) -> str:
    return "0" if abs(value) < 1e-9 * max(1.0, abs(reference)) else f"{value:.3g}"


def _as_float(value: Any) -> float | None:
    """A finite float, or None for missing, None, non-numeric and non-finite values."""
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of one metric, sorted by epoch; the last record of an epoch wins."""
    by_epoch = {}
    for record in records:
        epoch, value = _as_float(record.get("epoch")), _as_float(record.get(key))
        if epoch is not None and value is not None:
            by_epoch[epoch] = value
    epochs = np.array(sorted(by_epoch), dtype=np.float64)
    return epochs, np.array([by_epoch[e] for e in epochs], dtype=np.float64)


def _valid_rows(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, float]]:
    """The rows whose `keys` are all finite numbers (and beta > 0), as floats."""
    valid = []
    for row in rows:
        values = {k: _as_float(row.get(k)) for k in keys}
        if any(v is None for v in values.values()):
            continue
        if "beta" in values and values["beta"] <= 0:
            continue
        valid.append(values)
    return valid


def _group_stats(rows: Sequence[Mapping[str, float]], x_key: str, y_key: str):
    """Sorted x values and the mean, min and max of y over the rows sharing each x."""
    xs = np.unique([r[x_key] for r in rows])
    ys = [np.array([r[y_key] for r in rows if r[x_key] == x]) for x in xs]
    return (xs, np.array([y.mean() for y in ys]), np.array([y.min() for y in ys]), np.array([y.max() for y in ys]))


def _beta_norm(betas: np.ndarray) -> LogNorm:
    lo, hi = float(np.min(betas)), float(np.max(betas))
    if lo == hi:
        lo, hi = lo / 2, hi * 2
    return LogNorm(vmin=lo, vmax=hi)


def _beta_colorbar(fig: Figure, ax, norm: LogNorm, betas: np.ndarray) -> None:
    colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=_BETA_CMAP), ax=ax)
    colorbar.set_label("β", fontsize=12)
    unique = np.unique(betas)
    if unique.size <= 12:
        colorbar.ax.yaxis.set_minor_locator(NullLocator())
        colorbar.set_ticks(unique, labels=[f"{b:g}" for b in unique])


def _padded_range(values: np.ndarray, pad: tuple[float, float] = (0.08, 0.08)) -> tuple[float, float]:
    """(min, max) of values widened by the fractions pad = (below, above) of their span."""
    lo, hi = float(np.min(values)), float(np.max(values))
    span = hi - lo if hi > lo else max(1.0, abs(hi))
    return lo - pad[0] * span, hi + pad[1] * span


def _no_data(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color=_NO_DATA_COLOR, fontsize=12)


def _note_skipped(fig: Figure, skipped: int, total: int) -> None:
    """A small gray note under the plot (a supxlabel, so constrained layout makes room for it)."""
    if skipped:
        fig.supxlabel(f"{skipped} of {total} rows skipped (missing or invalid values)",
                      x=0.99, ha="right", fontsize=7, color=_NO_DATA_COLOR)
