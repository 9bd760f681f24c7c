"""Heatmap figures: colour maps, shared and fixed scales, ticks, sizes, NaN, numbered segments."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from explain_cli.errors import OptionError
from explain_cli.render.colormaps import NAMES, apply_cmap, lookup_table
from explain_cli.render.compare import CompareRow, render_compare_image
from explain_cli.render.figures import render_image, render_segments_image
from explain_cli.render.layout import PANELS_KEY, bar_ticks, load_font, to_png
from explain_cli.render.panels import panel_size
from explain_cli.render.scale import Scale, format_ticks, parse_scale, tick_labels, tick_layout

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def grey_image(h: int = 256, w: int = 256) -> np.ndarray:
    """A mid-grey picture with a gradient, so the overlay's base is easy to recognise."""
    ramp = np.linspace(60, 200, w).astype(np.uint8)
    return np.repeat(np.repeat(ramp[None, :, None], h, axis=0), 3, axis=2)


def panels(image: Image.Image) -> list[np.ndarray]:
    """The figure's panels as (h, w, 3) int arrays, in reading order."""
    pixels = np.asarray(image).astype(int)
    return [pixels[top:bottom, left:right] for left, top, right, bottom in image.info[PANELS_KEY]]


def quadrants(n: int = 256) -> np.ndarray:
    """Segment ids 0..3 in the four quadrants (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
    rows, cols = np.indices((n, n))
    return ((rows >= n // 2) * 2 + (cols >= n // 2)).astype(np.float64)


# ---------------------------------------------------------------- colour maps


def test_colormap_endpoints_match_matplotlib() -> None:
    assert lookup_table("viridis")[0].tolist() == [68, 1, 84]
    assert lookup_table("viridis")[255].tolist() == [253, 231, 37]
    assert lookup_table("inferno")[0].tolist() == [0, 0, 4]
    assert lookup_table("RdBu_r")[0].tolist() == [5, 48, 97]
    assert lookup_table("RdBu_r")[255].tolist() == [103, 0, 31]
    assert lookup_table("gray")[128].tolist() == [128, 128, 128]
    assert all(lookup_table(name).shape == (256, 3) for name in NAMES)


def test_colour_tables_are_package_data_declared_for_the_wheel() -> None:
    import json
    from importlib.resources import files
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    tables = json.loads(files("explain_cli.render").joinpath("colormaps.json").read_text(encoding="utf-8"))
    assert sorted(tables) == sorted(NAMES)
    assert all(len("".join(rows)) == 256 * 6 for rows in tables.values())
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert "colormaps.json" in pyproject["tool"]["setuptools"]["package-data"]["explain_cli.render"]


def test_diverging_midpoint_is_neutral() -> None:
    # RdBu_r's centre is ColorBrewer's #f7f7f7; t = 0.5 falls between entries 127 and 128.
    np.testing.assert_allclose(apply_cmap(np.array(0.5), "RdBu_r"), [246.5, 246.5, 246.5])
    np.testing.assert_allclose(apply_cmap(np.array([0.0, 1.0]), "bwr"), [[0, 0, 255], [255, 0, 0]])


def test_unknown_cmap_names_the_option_and_suggests() -> None:
    with pytest.raises(OptionError) as info:
        render_image(grey_image(), np.zeros((1, 256, 256)), ["a"], signed=True, title="t", cmap="rdbu_r")
    assert info.value.option == "cmap"
    assert "RdBu_r" in info.value.problem


def test_signed_zero_maps_to_the_neutral_colour() -> None:
    values = np.zeros((1, 256, 256))
    values[0, :, :64] = -1.0
    values[0, :, 192:] = 1.0
    image = render_image(grey_image(), values, ["a"], signed=True, title="t", style="side-by-side")
    _, mapped = panels(image)
    assert np.abs(mapped[128, 128] - 246.5).max() <= 1
    assert mapped[128, 10].tolist() == lookup_table("RdBu_r")[0].tolist()  # -max|v| → low end
    assert mapped[128, 250].tolist() == lookup_table("RdBu_r")[255].tolist()  # +max|v| → high end


# ---------------------------------------------------------------- scales


def two_maps() -> np.ndarray:
    """Both maps hold 0.5 in their left half; the first reaches 1.0 on the right, the second 0.5."""
    values = np.full((2, 256, 256), 0.5)
    values[0, :, 128:] = 1.0
    return values


@pytest.mark.parametrize("style", ["overlay", "side-by-side"])
def test_figure_scale_is_shared(style: str) -> None:
    image = render_image(grey_image(), two_maps(), ["a", "b"], signed=True, title="t", style=style)
    maps = panels(image)[-2:]
    assert maps[0][128, 40].tolist() == maps[1][128, 40].tolist()
    assert maps[0][128, 40].tolist() != maps[0][128, 220].tolist()


def test_panel_scale_is_per_panel() -> None:
    image = render_image(grey_image(), two_maps(), ["a", "b"], signed=True, title="t", style="side-by-side",
                         scale="panel")
    first, second = panels(image)[1:]
    # 0.5 is half the first panel's range but the whole of the second's.
    assert first[128, 40].tolist() != second[128, 40].tolist()
    assert second[128, 40].tolist() == lookup_table("RdBu_r")[255].tolist()


def test_fixed_scale_clips() -> None:
    values = np.full((1, 256, 256), 5.0)
    values[0, :, 128:] = -7.0
    image = render_image(grey_image(), values, ["a"], signed=True, title="t", style="side-by-side",
                         scale="fixed:-1,1")
    _, mapped = panels(image)
    assert mapped[128, 40].tolist() == lookup_table("RdBu_r")[255].tolist()
    assert mapped[128, 220].tolist() == lookup_table("RdBu_r")[0].tolist()


@pytest.mark.parametrize("text", ["global", "fixed", "fixed:1", "fixed:a,b", "fixed:nan,1", "fixed:-inf,1",
                                  "fixed:1,1", "fixed:2,1", "fixed:1,2,3"])
def test_bad_scale_strings(text: str) -> None:
    with pytest.raises(OptionError) as info:
        parse_scale(text)
    assert info.value.option == "scale"


def test_good_scale_strings() -> None:
    assert parse_scale("figure") == Scale("figure")
    assert parse_scale(" panel ") == Scale("panel")
    assert parse_scale("fixed:-0.5, 1e-1") == Scale("fixed", (-0.5, 0.1))


@pytest.mark.parametrize(("option", "kwargs"), [("style", {"style": "contours"}), ("opacity", {"opacity": 1.5}),
                                                ("scale", {"scale": "fixed:1,0"})])
def test_bad_options_name_themselves(option: str, kwargs: dict) -> None:
    with pytest.raises(OptionError) as info:
        render_image(grey_image(), np.zeros((1, 256, 256)), ["a"], signed=True, title="t", **kwargs)
    assert info.value.option == option


# ---------------------------------------------------------------- ticks


def nice_ticks(lo: float, hi: float) -> np.ndarray:
    """The round ticks `tick_layout` picks over [lo, hi] on a bar so long that no label is dropped."""
    return tick_layout(lo, hi, 100_000, lambda text: 8.0 * len(text), gap=8, overhang=50).values


def test_ticks_symmetric_range() -> None:
    ticks = nice_ticks(-0.0506, 0.0506)
    # One number of decimals per bar, as matplotlib's formatter does.
    assert format_ticks(ticks) == ["-0.050", "-0.025", "0", "0.025", "0.050"]


def test_ticks_zero_is_plain_and_integers_have_no_decimals() -> None:
    assert format_ticks(nice_ticks(-4.3, 4.3)) == ["-4", "-2", "0", "2", "4"]
    assert format_ticks(nice_ticks(0.0, 1.0)) == ["0", "0.25", "0.50", "0.75", "1.00"]


def test_ticks_share_a_power_of_ten_only_when_needed() -> None:
    assert tick_labels(nice_ticks(-2.6e-5, 2.6e-5)) == (["-2", "-1", "0", "1", "2"], -5)
    assert tick_labels(nice_ticks(0.0, 2.0e6)) == (["0", "0.5", "1.0", "1.5", "2.0"], 6)
    assert tick_labels(nice_ticks(0.0099, 0.0103)) == (["0.99", "1.00", "1.01", "1.02", "1.03"], -2)
    assert format_ticks(nice_ticks(-2.6e-5, 2.6e-5)) == ["-2e-5", "-1e-5", "0", "1e-5", "2e-5"]
    assert format_ticks(nice_ticks(0.2, 0.73)) == ["0.2", "0.3", "0.4", "0.5", "0.6", "0.7"]
    assert not any(label.startswith("+") for label in format_ticks(nice_ticks(-3.0, 3.0)))


def _bar_ranges() -> list[tuple[float, float]]:
    """Signed, non-negative, offset (RISE-like) and lopsided ranges with magnitudes 1e-8 … 1e3."""
    ranges = []
    for exponent in range(-8, 4):
        for mantissa in (1.0, 2.5, 4.9, 7.7):
            v = mantissa * 10.0**exponent
            ranges += [(-v, v), (0.0, v), (v, v * 1.04), (-v, 0.3 * v), (0.25 * v, 0.72 * v)]
    return ranges


@pytest.mark.parametrize("font_px", [12, 16, 22])
def test_tick_labels_never_collide_or_read_minus_zero(font_px: int) -> None:
    """Bars of 1e-8 … 1e3 and 100 … 800 px get distinct, honest, separate labels (two at least on
    bars as long as the figures draw them at that font size)."""
    font = load_font(font_px)
    shortest = 0.85 * 16 * font_px  # the figures' shortest bar at this font size (panel_font_px, 0.85 × panel)
    for lo, hi in _bar_ranges():
        for width in (100, 150, 217, 300, 435, 600, 800):
            overhang = 0.075 * width
            layout = bar_ticks((lo, hi), width, font_px, overhang)
            case = f"[{lo:g}, {hi:g}] at {width} px: {layout.labels} ×10^{layout.exponent}"
            assert len(layout.labels) >= (2 if width >= shortest else 1), case
            assert len(set(layout.labels)) == len(layout.labels), case
            assert not any(text.lstrip("-").strip("0.") == "" and text.startswith("-") for text in layout.labels), case
            for value, text in zip(layout.values, layout.labels):
                assert lo - 1e-12 * abs(hi - lo) <= value <= hi + 1e-12 * abs(hi - lo), case
                assert math.isclose(float(text) * 10.0**layout.exponent, value, rel_tol=1e-9), case
            centres = (layout.values - lo) / (hi - lo) * (width - 1)
            halves = np.array([font.getlength(text) / 2 for text in layout.labels])
            assert np.all(centres[1:] - halves[1:] - (centres[:-1] + halves[:-1]) >= 4), case
            assert centres[0] - halves[0] >= -overhang and centres[-1] + halves[-1] <= width - 1 + overhang, case


def test_tiny_scores_get_a_shared_exponent_on_the_figure() -> None:
    """resnet-sized scores (~1e-8) on a single panel: mantissas on the ticks, ×10⁻⁸ drawn under them."""
    values = np.full((1, 256, 256), 1e-8)
    values[0, :, :128] = -1.2e-8
    small = render_image(grey_image(), values, ["a"], signed=True, title="t")
    plain = render_image(grey_image(), values * 1e8, ["a"], signed=True, title="t")
    assert small.height > plain.height  # one more line under the bar: the shared ×10⁻⁸


# ---------------------------------------------------------------- sizes and output


def test_tiny_input_is_enlarged_with_visible_pixels() -> None:
    rng = np.random.default_rng(0)
    tiny = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    values = rng.normal(size=(1, 16, 16))
    image = render_image(tiny, values, ["a"], signed=True, title="t", style="side-by-side")
    picture, mapped = panels(image)
    assert picture.shape[:2] == (256, 256) and mapped.shape[:2] == (256, 256)
    # Nearest enlargement: each input pixel becomes a uniform 16×16 block.
    np.testing.assert_array_equal(picture[16:32, 32:48], np.broadcast_to(tiny[1, 2], (16, 16, 3)))


def test_panel_size_rules() -> None:
    assert panel_size(64, 64) == (256, 256, True)
    assert panel_size(240, 320) == (256, 341, False)
    assert panel_size(3000, 4000) == (768, 1024, False)
    assert panel_size(3000, 4000, max_size=None) == (3000, 4000, False)


def test_png_is_valid_and_matches_the_image() -> None:
    kwargs = dict(signed=True, title="kernelshap · cat.png · 4 segments", labels_full=quadrants(),
                  top_segments=[[3, 0]])
    data = to_png(render_image(grey_image(), np.ones((1, 256, 256)), ["cat (281): prob 0.9"], **kwargs))
    assert data.startswith(PNG_SIGNATURE)
    decoded = Image.open(io.BytesIO(data))
    figure = render_image(grey_image(), np.ones((1, 256, 256)), ["cat (281): prob 0.9"], **kwargs)
    assert decoded.size == figure.size
    np.testing.assert_array_equal(np.asarray(decoded.convert("RGB")), np.asarray(figure))


# ---------------------------------------------------------------- NaN and segments


def test_nan_region_shows_the_image_without_map_colour() -> None:
    values = np.ones((1, 256, 256))
    values[0, :, :100] = np.nan  # outside the model's window
    image = render_image(grey_image(), values, ["a"], signed=True, title="t")
    (mapped,) = panels(image)
    outside, inside = mapped[20:236, 5:90], mapped[20:236, 130:250]
    assert np.all(outside[..., 0] == outside[..., 1]) and np.all(outside[..., 1] == outside[..., 2])  # grey
    assert outside.mean() < grey_image()[:, 5:90].mean()  # dimmed
    assert np.all(inside[..., 0] - inside[..., 2] > 40)  # red map colour


def test_numbered_top_segments_sit_at_their_centroids() -> None:
    values = np.zeros((1, 256, 256))
    values[0][quadrants() == 3] = 1.0
    image = render_image(grey_image(), values, ["a"], signed=True, title="t", style="side-by-side",
                         labels_full=quadrants(), top_segments=[[3, 0]])
    _, mapped = panels(image)
    for cy, cx in ((191.5, 191.5), (63.5, 63.5)):  # centroids of segments 3 (rank 1) and 0 (rank 2)
        window = mapped[int(cy) - 3:int(cy) + 5, int(cx) - 3:int(cx) + 5]
        # Only the box's white fill, its dark digit and their anti-aliased greys: no map colour.
        assert np.all(np.ptp(window, axis=2) <= 2)
        assert (window == 255).all(axis=2).any()
    # Segment 1 is not a top segment: its centre shows the map's neutral colour, no box.
    assert np.abs(mapped[63, 191] - 246.5).max() <= 1.5
    # The outlined segment 3 has a white outline on its border (between columns 127 and 128) ...
    assert (mapped[200, 127:129] > 220).all()

    # With only segment 3 ranked, the border of segments 0 and 2 (rows 127 | 128) is a thin grey line.
    image = render_image(grey_image(), values, ["a"], signed=True, title="t", style="side-by-side",
                         labels_full=quadrants(), top_segments=[[3]])
    column = panels(image)[1][120:136, 30, 0]
    assert column[[0, -1]].tolist() == [246, 246]  # neutral away from the border
    assert 120 < column.min() < 220 and column.argmin() in (7, 8)


def test_segments_png_is_valid() -> None:
    data = to_png(render_segments_image(grey_image(), quadrants(), "slic: 4 segments", numbered=True))
    assert data.startswith(PNG_SIGNATURE)
    picture = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert ((picture[..., 0] > 200) & (picture[..., 2] < 60)).any()  # the yellow boundaries


# ---------------------------------------------------------------- compare montage


def test_compare_groups_signed_and_unsigned_scales() -> None:
    signed_a = np.full((2, 256, 256), 0.5)
    signed_b = np.full((2, 256, 256), -1.0)
    unsigned = np.full((2, 256, 256), 3.0)
    unsigned[:, :, 128:] = 1.0
    rows = [CompareRow("lime", signed_a, True, 100, ["AUC 0.1", "AUC 0.2"]),
            CompareRow("kernelshap", signed_b, True, 200),
            CompareRow("rise", unsigned, False, 300)]
    image = render_compare_image(grey_image(), rows, target_captions=["cat", "dog"], style="side-by-side", scale="figure")
    found = panels(image)
    assert len(found) == 2 * (1 + len(rows))  # per target: the image, then one panel per method
    lime, shap, rise = found[1:4]
    table = lookup_table("RdBu_r").astype(float)
    # Signed methods share ±1: lime's 0.5 sits three quarters up the diverging map.
    np.testing.assert_allclose(lime[100, 100], apply_cmap(np.array(0.75), "RdBu_r").round(), atol=1)
    assert shap[100, 100].tolist() == table[0].tolist()
    # RISE has its own [1, 3] scale on the sequential map.
    assert rise[100, 40].tolist() == lookup_table("inferno")[255].tolist()
    assert rise[100, 220].tolist() == lookup_table("inferno")[0].tolist()
