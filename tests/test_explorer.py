"""The garment explorer of the notebook (ipywidgets): what its controls do to the pictures it shows. (That it
renders and answers clicks in JupyterLab in a real browser was tried by hand: docs/notebook.md.)"""

import io

import numpy as np
import pytest
from PIL import Image

from prendas.artifacts import image_grid
from prendas.models import build_generator
from prendas.notebook import GarmentExplorer, shipped_generator_path
from prendas.sampling import generate_images, interpolate_latents, latent_batch, load_generator

pytestmark = pytest.mark.numeric  # (compares computed numbers: CI runs it again held to AVX2)


def _pixels(png, scale):
    return np.asarray(Image.open(io.BytesIO(png)))[::scale, ::scale]


@pytest.fixture(scope="module")
def shipped():
    path = shipped_generator_path()
    assert path is not None, "the shipped generator is missing from models/"
    return load_generator(path)


def test_it_shows_the_garments_of_the_class_and_seed_chosen(shipped):
    explorer = GarmentExplorer(shipped, seed=4)
    z = latent_batch(16, 100, 4)
    every = generate_images(shipped, z)  # every class in turn
    assert np.array_equal(_pixels(explorer.grid.value, 3), image_grid(every, cols=8, scale=1))
    explorer.garment.value = 8  # bags
    bags = generate_images(shipped, z, np.full(16, 8))
    assert np.array_equal(_pixels(explorer.grid.value, 3), image_grid(bags, cols=8, scale=1))
    explorer.new.click()  # the button: the next seed
    assert explorer.seed.value == 5
    assert np.array_equal(explorer.images, generate_images(shipped, latent_batch(16, 100, 5), np.full(16, 8)))
    explorer.seed.value = 4
    assert np.array_equal(explorer.images, bags)


def test_the_slider_walks_from_the_first_garment_to_another_of_its_class(shipped):
    """Bit for bit only where the computation is the same (one garment at a time); the first garment of the grid is
    drawn in a batch of 16, which rounds differently on some processors, so it is asked to look the same."""
    explorer = GarmentExplorer(shipped, seed=2)
    explorer.garment.value = 7  # sneakers
    z, sneaker = latent_batch(16, 100, 2), np.full(1, 7)
    at_start = generate_images(shipped, z[:1], sneaker)[0]
    assert np.array_equal(_pixels(explorer.between.value, 6), at_start)  # at 0: the first garment...
    assert np.array_equal(_pixels(explorer.start.value, 3), at_start)  # ...which the left picture shows
    assert np.abs(at_start.astype(int) - explorer.images[0]).mean() < 1  # the grid's first garment (its batch of 16)
    explorer.walk.value = 1.0
    assert np.array_equal(explorer.walked, generate_images(shipped, z[1:2], sneaker)[0])
    assert np.array_equal(_pixels(explorer.end.value, 3), explorer.walked)
    explorer.walk.value = 0.5
    halfway = interpolate_latents(z[0], z[1], 21)[10]
    assert np.array_equal(explorer.walked, generate_images(shipped, halfway[None], sneaker)[0])
    assert np.abs(explorer.walked.astype(int) - at_start).mean() > 5  # halfway is another garment


def test_an_unconditional_generator_has_no_class_to_choose():
    generator = build_generator(12)
    explorer = GarmentExplorer(generator, title="untrained")
    assert explorer.garment not in explorer.panel.children[1].children
    assert np.array_equal(explorer.images, generate_images(generator, latent_batch(16, 12, 0)))
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
