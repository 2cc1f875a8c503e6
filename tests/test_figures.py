"""`vaejax.figures`: the PNGs of a trained run."""

import numpy as np
from PIL import Image




def test_figures_are_readable_pngs(trained):
    workdir, _, _ = trained
    sizes = {}
    for name in ("prior_samples.png", "reconstructions.png", "latent_traversals.png",
                 "training_curves.png", "latent_manifold.png"):
        path = workdir / "figures" / name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG"
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
            sizes[name] = image.size
        assert pixels.std() > 1.0, name  # not a blank image
    # 20 x 20 decoded 28x28 tiles, so the manifold is at least 20 * 28 pixels on a side.
    assert min(sizes["latent_manifold.png"]) >= 20 * 28
    assert sizes["prior_samples.png"][0] >= 10 * 28
    assert sizes["reconstructions.png"][0] >= 10 * 28


def test_reconstructions_pair_each_test_image_with_its_decoding(trained, monkeypatch):
    """The figure's top rows are the binarized test images and the rows under them their
    decoder means (a swap, or reconstructions of other images, fails)."""
    from vaejax import figures, plots, runs  # noqa: PLC0415

    workdir, _, _ = trained
    run = runs.load_run(workdir, log=lambda *_: None)
    seen = {}
    draw = plots.reconstructions

    def capture(inputs, outputs, path, **kw):
        seen["inputs"], seen["outputs"] = np.asarray(inputs), np.asarray(outputs)
        return draw(inputs, outputs, path, **kw)

    monkeypatch.setattr(plots, "reconstructions", capture)
    figures.draw_figures(workdir, run.program, run.params, run.hyper, run.splits.test,
                         log=lambda *_: None)
    x, recon = seen["inputs"], seen["outputs"]
    assert set(np.unique(x)) <= {0.0, 1.0}                   # binarized inputs
    assert 0.0 < recon.min() and recon.max() < 1.0            # Bernoulli means, not samples
    # each decoding is nearer its own input than the other inputs, on average
    own = np.mean((recon - x) ** 2)
    others = np.mean((recon - np.roll(x, 1, axis=0)) ** 2)
    assert own < others, (own, others)
