"""What the heatmaps show: the object under the map, straight grid cells, numbers of either sign,
RISE around its mean, one scale per map in the comparison, and curves fit for a paper."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from explain_cli.render.boundaries import all_rectangles
from explain_cli.render.captions import heatmap_title
from explain_cli.render.colormaps import apply_cmap, lookup_table
from explain_cli.render.compare import CompareRow, render_compare_image
from explain_cli.render.figures import render_image, saliency_centres, strongest_segments
from explain_cli.render.layout import PANELS_KEY, to_png
from explain_cli.render.regions import regions_from_maps


def panels(image: Image.Image) -> list[np.ndarray]:
    """The figure's panels as (h, w, 3) int arrays, in reading order."""
    pixels = np.asarray(image).astype(int)
    return [pixels[top:bottom, left:right] for left, top, right, bottom in image.info[PANELS_KEY]]


def disc_on_grass(n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A blue disc on green of (nearly) the same luminance, as the demo's images have; and its mask."""
    rows, cols = np.indices((n, n))
    disc = (rows - n / 2) ** 2 + (cols - n / 2) ** 2 < (n / 5) ** 2
    image = np.empty((n, n, 3), np.uint8)
    image[...] = (40, 160, 60)  # luminance 112.6
    image[disc] = (110, 100, 250)  # luminance 120.4
    return image, disc


def grid_labels(n: int = 224, cells: int = 4) -> np.ndarray:
    rows, cols = np.indices((n, n))
    size = n // cells
    return ((rows // size) * cells + cols // size).astype(np.float64)


# ---------------------------------------------------------------- item 4: the object stays visible


def test_overlay_keeps_an_object_that_differs_only_in_colour() -> None:
    image, disc = disc_on_grass()
    (panel,) = panels(render_image(image, np.zeros((1, 256, 256)), ["a"], signed=True, title="t"))
    inside, outside = panel[disc].mean(axis=0), panel[~disc].mean(axis=0)
    assert np.abs(inside - outside).max() > 30  # plain luminance would leave ~2 levels
    assert np.ptp(panel[disc & (np.indices(disc.shape)[0] % 7 == 0)], axis=1).max() <= 1  # still grey: no hue


def test_overlay_of_a_dark_photo_shows_its_structure() -> None:
    rng = np.random.default_rng(0)
    dark = (rng.random((256, 256, 3)) * 30).astype(np.uint8)  # a night picture: 0..30
    dark[64:192, 64:192] += 15
    (panel,) = panels(render_image(dark, np.zeros((1, 256, 256)), ["a"], signed=True, title="t"))
    assert panel[100:150, 100:150].mean() - panel[5:40, 5:40].mean() > 15
    assert np.percentile(panel, 99) - np.percentile(panel, 1) > 45


# ---------------------------------------------------------------- item 3: grid cells


def test_grid_cells_are_detected_as_rectangles() -> None:
    assert all_rectangles(grid_labels())
    labels = grid_labels()
    labels[0, 0] = 5  # one pixel of cell 0 belongs to cell 5: not a rectangle any more
    assert not all_rectangles(labels)


def test_grid_cells_get_straight_edges_and_the_same_outline() -> None:
    """Cells of a grid at 224² (a model-space grid upsampled ×4) keep straight edges and square corners."""
    labels = grid_labels()
    values = np.full((1, 224, 224), -1.0)  # dark blue everywhere: only the outline is white
    values[0][labels == 5] = 1.0
    image = render_image(np.full((224, 224, 3), 128, np.uint8), values, ["a"], signed=True, title="t",
                         labels_full=labels, top_segments=[[5]], style="side-by-side")
    _, mapped = panels(image)  # 256 × 256: cell 5 spans rows and columns 64..128
    white = (mapped > 215).all(axis=2)
    # The outline runs along the cell's left edge to within a few pixels of both corners ...
    assert white[70:122, 62:67].any(axis=1).all()
    assert white[66:69, 62:67].any() and white[123:126, 62:67].any()
    # ... and never bulges into the neighbouring cells, as smoothed arcs did.
    assert not white[20:44, :].any() and not white[:, 150:].any()
    # Thin boundaries between unranked cells are straight: the same column along the whole edge.
    column = np.argmin(mapped[140:250, 180:200, 0], axis=1)
    assert np.ptp(column) <= 1


# ---------------------------------------------------------------- item 6: numbers of either sign


def test_strongest_segments_rank_by_magnitude() -> None:
    scores = np.array([[-0.1, -0.9, -0.5, 0.2, -0.05], [0.3, 0.1, 0.0, 0.0, -0.4]])
    assert strongest_segments(scores, 3) == [[1, 2, 3], [4, 0, 1]]


def test_heatmap_numbers_the_negative_evidence(monkeypatch) -> None:
    """When every score is negative, the numbered segments are the most negative ones, and the figure says so."""
    import torch

    from explain_cli import explain
    from explain_cli.render import figures

    captured = {}

    def spy(*args, **kwargs):
        captured.update(kwargs)
        return Image.new("RGB", (8, 8))

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    with torch.no_grad():
        model[1].weight.fill_(-0.01)
        model[1].bias.zero_()
    (e,) = explain(model, torch.rand(3, 16, 16), method="ablation", segments="grid", n_segments=16,
                   target=[0], baseline="zero", preprocess="none", output="logits")
    assert (e.scores < 0).all()
    monkeypatch.setattr(figures, "render_image", spy)
    e.render()
    expected = list(np.argsort(e.scores[0], kind="stable")[:5])  # the most negative first
    assert captured["top_segments"] == [expected]
    assert "|score|" in captured["note"]


# ---------------------------------------------------------------- item 5: RISE


def test_rise_maps_are_drawn_around_their_mean() -> None:
    strong = np.linspace(0.3, 0.7, 256)[None, :].repeat(256, axis=0)
    weak = np.full((256, 256), 0.26)
    weak[:, 128:] = 0.27
    maps = np.stack([strong, weak])
    centres = saliency_centres(maps)
    assert centres == pytest.approx([0.5, 0.265])
    image = render_image(np.full((256, 256, 3), 128, np.uint8), maps, ["a", "b"], signed=False, title="t",
                         centres=centres, style="side-by-side")
    _, first, second = panels(image)
    neutral = apply_cmap(np.array(0.5), "RdBu_r")
    assert np.abs(first[128, 127] - neutral).max() <= 3  # the mean is the neutral colour
    assert first[128, 250, 0] - first[128, 250, 2] > 60 and first[128, 5, 2] - first[128, 5, 0] > 60
    # The weak target's halves differ visibly (below its mean blue, above red), not one flat colour.
    assert second[128, 200, 0] - second[128, 200, 2] > 3 and second[128, 50, 2] - second[128, 50, 0] > 3


def test_rise_title_counts_no_segments() -> None:
    assert "segments" not in heatmap_title("rise", "a.png", None, 4002, drawn=2, total=2)
    assert "44 segments" in heatmap_title("kernelshap", "a.png", 44, 2048, drawn=2, total=2)


# ---------------------------------------------------------------- item 2: compare montage


def test_compare_gives_every_map_its_own_scale() -> None:
    strong = np.full((1, 256, 256), 0.5)
    weak = np.full((1, 256, 256), 0.001)
    strong[0, :, 128:], weak[0, :, 128:] = -0.5, -0.001
    rows = [CompareRow("ablation", strong, True, 45), CompareRow("kernelshap", weak, True, 2048)]
    image = render_compare_image(np.full((256, 256, 3), 128, np.uint8), rows, target_captions=["cat"],
                                 style="side-by-side")
    _, first, second = panels(image)
    table = lookup_table("RdBu_r")
    for panel in (first, second):  # the weak map reaches the ends of the colour map too
        assert panel[100, 40].tolist() == table[255].tolist() and panel[100, 220].tolist() == table[0].tolist()


def test_compare_recovers_segments_from_a_saved_map() -> None:
    """A piecewise-constant map, resampled bilinearly as saved maps are, gives its segments back; RISE's does not."""
    coarse = np.zeros((16, 16))
    coarse[4:10, 3:9] = 1.0
    coarse[10:, :] = -0.5
    smooth = np.asarray(Image.fromarray(coarse.astype(np.float32)).resize((80, 80), Image.Resampling.BILINEAR))
    regions = regions_from_maps(smooth[None])
    assert regions is not None and len(np.unique(regions)) == 3
    assert regions[30, 30] != regions[5, 5] != regions[70, 70]
    rng = np.random.default_rng(0)
    assert regions_from_maps(rng.random((1, 80, 80))) is None  # a per-pixel saliency


# ---------------------------------------------------------------- item 7: curves


def test_curves_figure_is_print_sized_and_explains_the_dashes() -> None:
    from explain_cli.metrics.curves import Curve
    from explain_cli.render.curves import render_curves_image

    fractions = np.linspace(0, 1, 11)
    curves = [Curve("deletion", "blur", ranking, fractions, np.exp(-fractions * rate)[None], np.array([0.3]), 11)
              for ranking, rate in (("map", 8.0), ("random", 1.0))]
    png = to_png(render_curves_image(curves, "toy", labels=["cat"]))
    image = Image.open(io.BytesIO(png))
    assert image.width >= 560 and image.height >= 500  # one panel here; two are about 1200 px wide
    assert image.info["dpi"] == pytest.approx((200, 200), abs=0.1)
    title_line = np.asarray(image.convert("L"))[: image.height // 20, image.width // 3:]
    assert (title_line < 100).sum() > 200  # the dashed/solid legend sits on the title line
