"""`explain compare`: one montage PNG of every method's saved map, read back from written results.

Per input, the image then each method's map for every target the methods share, with the
metrics under each panel. The maps come from the ``.npy`` files written with ``--save-map``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from explain_cli.errors import ExplainError
from explain_cli.render.captions import compare_caption, metric_line, task_caption
from explain_cli.render.records import Record, read_explanations, target_metrics

if TYPE_CHECKING:
    from PIL import Image as PILImage


def region_shape(region: dict | None) -> "np.ndarray | Sequence[float] | None":
    """A segmentation target's region as compare draws it: its exact mask when the JSON carries it
    (``rle``, original pixels), else its bounding box."""
    if region is None:
        return None
    if region.get("rle") is not None and region.get("frame") == "original":
        from explain_cli.rle import rle_decode

        try:
            return rle_decode(region["rle"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged run list: the box still says where the region is
    return region.get("bbox")


def target_overlay(target: dict) -> dict | None:
    """What compare draws over a target's panels, as its task's overlay: its box, else its region (`region_shape`)."""
    shape = target.get("box_original") or target.get("box") or region_shape(target.get("region"))
    if shape is None:
        return None
    return {"region": shape, "frame": "original"} if isinstance(shape, np.ndarray) else {"box": shape}


def target_key(target: dict) -> object:
    """What makes two runs' targets the same one: the class index; for a box its class and coordinates; for a
    region its class and where it came from; for a similarity its kind and prompt."""
    box, region = target.get("box"), target.get("region")
    if box is not None:
        return target.get("index"), tuple(round(float(v), 1) for v in box)
    if region is not None:
        return target.get("index"), region.get("source"), region.get("id"), tuple(region.get("bbox") or ())
    if target.get("kind") in ("reference", "prompt"):
        return target.get("kind"), target.get("index")
    return target.get("index")


def _signed(method: str) -> bool:
    """Signed scores (diverging colours) or non-negative (RISE), as the engine declares."""
    from explain_cli.engines import ENGINES

    engine = ENGINES.get(method)
    return True if engine is None else bool(engine.signed)


def compare_image(records: list[Record]) -> "PILImage.Image":
    """A PIL montage: one block per input (the image, then each method's map per shared target)."""
    from PIL import Image

    from explain_cli.inputs import load_input
    from explain_cli.render.compare import CompareRow, render_compare_image
    from explain_cli.render.figures import saliency_centres
    from explain_cli.render.regions import regions_from_maps
    from explain_cli.saved import load_saved_map

    groups: dict[tuple[str, str], list[Record]] = {}
    for rec in sorted(records, key=lambda r: (r.input_path, r.method)):
        if not rec.batch:  # a batch method's map is global, not this input's
            groups.setdefault(rec.input_key, []).append(rec)
    if not groups:
        raise ExplainError("no per-input explanation to compare (batch methods such as permutation are global)")
    blocks = []
    for (_, input_path), recs in groups.items():
        first = recs[0]
        shared = [target_key(t) for t in first.doc["targets"]
                  if all(target_key(t) in [target_key(u) for u in r.doc["targets"]] for r in recs)]
        if not shared:
            raise ExplainError(f"{input_path}: the methods explained no class or box in common; "
                               "use one --target or --top-k (detection: one --min-score, or the same --box)")
        try:
            display = load_input(input_path, channels=None).display
        except ExplainError as exc:
            raise ExplainError(f"cannot redraw {input_path} (recorded in {first.path}): {exc}") from None
        rows = []
        for rec in recs:
            keys = [target_key(t) for t in rec.doc["targets"]]
            pick = [keys.index(i) for i in shared]
            evaluation = rec.doc.get("evaluation")
            maps = load_saved_map(rec.path, rec.doc)  # NAME.METHOD.npy, the run's own (hash and shape checked)
            # Segment-level maps get their segments back from their flat regions (smooth edges);
            # a per-pixel saliency (RISE) has none and is drawn relative to its mean, as in its heatmap.
            regions = regions_from_maps(maps)
            signed = _signed(rec.method)
            rows.append(CompareRow(method=rec.method, maps=maps[pick], signed=signed,
                                   evaluations=rec.doc.get("evaluations"),
                                   metrics=[metric_line(target_metrics(evaluation, k)) for k in pick],
                                   boundaries=regions is not None, labels=regions,
                                   centres=saliency_centres(maps[pick]) if regions is None and not signed else None))
        by_key = {target_key(t): (row, t) for row, t in enumerate(first.doc["targets"])}
        chosen = [by_key[i] for i in shared]
        if any(task_caption(row, t, None) is not None for row, t in chosen):  # detection, segmentation, similarity
            captions = [task_caption(row, t, first.doc.get("output_space")) or "" for row, t in chosen]
            overlays = [target_overlay(t) for _, t in chosen]
        else:
            captions = [compare_caption(t.get("label"), t["index"], first.doc.get("output_space"), t["score"])
                        for _, t in chosen]
            overlays = None
        blocks.append(render_compare_image(display, rows, target_captions=captions, overlays=overlays,
                                           title=Path(input_path).name))
    width = max(b.width for b in blocks)
    canvas = Image.new("RGB", (width, sum(b.height for b in blocks)), "white")
    y = 0
    for block in blocks:
        canvas.paste(block, (0, y))
        y += block.height
    return canvas


def write_compare(sources: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the comparison montage: ``out``, else compare.png in the one folder given (or the first JSON's).

    Raises
    ------
    ExplainError
        No explanation found, a map not saved (rerun with --save-map), an input that cannot be read.
    """
    from explain_cli.fileio import atomic_write_bytes
    from explain_cli.render.layout import to_png

    records = read_explanations(sources)
    if not records:
        raise ExplainError(f"no explanation JSON in {', '.join(map(str, sources))}")
    if out is None:
        first = Path(sources[0])
        out = (first if first.is_dir() else first.parent) / "compare.png"
    png = to_png(compare_image(records))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, png)
    return path
