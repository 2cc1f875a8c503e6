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
