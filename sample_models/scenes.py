"""Multi-object synthetic scenes with ground truth, shared by the detector, segmenter and embedder scripts.

A scene is SIDE x SIDE (128) pixels: the textured background of train_shapes.py, a few
distractors that are not one of the four classes (irregular blobs, thin lines, patches of
coloured noise), then 1-3 shapes (circle, square, triangle, cross) drawn with train_shapes'
draw_shape. Like train_shapes, everything is drawn at DRAW_SCALE (4x), blurred slightly and
downsampled, so edges look like a resized photo.

Each object's bounding box side is about 10-35 % of the image side (13-45 px at 128). Objects may
overlap, but a placement is only accepted when every object keeps at least MIN_VISIBLE of its
pixels visible; later objects are drawn over earlier ones. Distractors are drawn under the objects.

Ground truth comes from the same geometry drawn on label canvases at 4x and area-averaged:
a pixel belongs to the label (background or object i) that covers most of it.

    from scenes import make_scene, make_scenes
    scene = make_scene(np.random.default_rng(0))
    scene.image      # uint8 (H, W, 3)
    scene.boxes      # float32 (N, 4) x1, y1, x2, y2 in pixels, tight around the object's visible pixels
    scene.labels     # int64 (N,) class index into CLASSES
    scene.instances  # uint8 (H, W): 0 background, i + 1 for object i (later objects overwrite earlier)
    scene.semantic   # uint8 (H, W): 0 background, 1 + class index
    make_scene(rng, backdrop=True).backdrop  # uint8 (H, W, 3): the same scene without its objects

Deterministic: the same Generator state gives the same scene.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # train_shapes is a script beside this one, not a package module

from train_shapes import CLASSES, DRAW_SCALE, background, draw_shape  # noqa: E402

SIDE = 128
MIN_VISIBLE = 0.75  # share of each object's own pixels that must stay visible
#: draw_shape's "radius" r as a share of the image side; box sides come out at about 1.5-2.3 r,
#: i.e. roughly 10-35 % of the side.
RADIUS_RANGE = (0.065, 0.17)


@dataclass
class Scene:
    image: np.ndarray  # uint8 (H, W, 3)
    boxes: np.ndarray  # float32 (N, 4) x1, y1, x2, y2 (x2, y2 exclusive pixel edges)
    labels: np.ndarray  # int64 (N,)
    instances: np.ndarray  # uint8 (H, W)
    semantic: np.ndarray  # uint8 (H, W)
    backdrop: np.ndarray | None = None  # uint8 (H, W, 3): the same scene without its objects (make_scene(backdrop=True))

    @property
    def names(self) -> list[str]:
        return [CLASSES[int(i)] for i in self.labels]


def _contrasting_colour(rng: np.random.Generator, img: Image.Image, cx: float, cy: float) -> tuple[int, int, int]:
    """A colour that stands out from the background under (cx, cy), as in train_shapes.make_image."""
    bg = np.asarray(img.getpixel((int(cx), int(cy))), dtype=np.float64)
    while True:
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - bg).sum() > 180:
            return tuple(int(v) for v in colour)


def _draw_distractor(rng: np.random.Generator, img: Image.Image, big: int) -> None:
    """One thing that is not a shape of any class: an irregular blob, a thin line or a noise patch."""
    draw = ImageDraw.Draw(img)
    kind = rng.choice(["blob", "line", "noise"], p=[0.45, 0.35, 0.2])
    colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
    if kind == "blob":  # a lumpy star-ish polygon: many vertices, strongly varying radius
        r = rng.uniform(0.05, 0.12) * big
        cx, cy = rng.uniform(0, big, 2)
        n = int(rng.integers(7, 12))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = r * rng.uniform(0.35, 1.0, n)
        draw.polygon([(cx + q * math.cos(a), cy + q * math.sin(a)) for a, q in zip(angles, radii)], fill=colour)
    elif kind == "line":  # a thin polyline with two or three segments
        pts = [tuple(rng.uniform(0, big, 2))]
        for _ in range(int(rng.integers(2, 4))):
            step = rng.uniform(0.15, 0.4) * big
            a = rng.uniform(0, 2 * math.pi)
            pts.append((pts[-1][0] + step * math.cos(a), pts[-1][1] + step * math.sin(a)))
        draw.line(pts, fill=colour, width=int(rng.uniform(0.6, 2.0) * DRAW_SCALE))
    else:  # coloured noise, as in make_eval_set's distractors
        side = int(big * rng.uniform(0.08, 0.16))
        px, py = rng.integers(0, big - side, 2)
        noise = rng.uniform(0, 255, (max(1, side // DRAW_SCALE), max(1, side // DRAW_SCALE), 3)).astype(np.uint8)
        img.paste(Image.fromarray(noise).resize((side, side), Image.NEAREST), (int(px), int(py)))


def _object_mask(kind: str, cx: float, cy: float, r: float, angle: float, big: int) -> np.ndarray:
    canvas = Image.new("L", (big, big), 0)
    draw_shape(ImageDraw.Draw(canvas), kind, cx, cy, r, angle, (255,))
    return np.asarray(canvas) > 127


def _downsample_labels(label_big: np.ndarray, n_labels: int, side: int) -> np.ndarray:
    """Area-average each label's indicator to ``side`` and take the label covering most of a pixel."""
    s = label_big.shape[0] // side
    cover = np.stack([(label_big == k).reshape(side, s, side, s).mean(axis=(1, 3)) for k in range(n_labels + 1)])
    return cover.argmax(axis=0).astype(np.uint8)


def make_scene(
    rng: np.random.Generator,
    *,
    n_objects: int | None = None,
    kinds: list[str] | None = None,
    n_distractors: int | None = None,
    side: int = SIDE,
    backdrop: bool = False,
) -> Scene:
    """Draw one scene; counts and classes are random unless given.

    Parameters
    ----------
    rng : numpy Generator
        All randomness comes from it.
    n_objects : int, optional
        1-3 by default (uniform); ignored when ``kinds`` is given.
    kinds : list of str, optional
        The classes to draw, in drawing order (repeats allowed).
    n_distractors : int, optional
        0-3 by default.
    side : int
        Image side in pixels.
    backdrop : bool
        Also render the scene without its objects (background and distractors, finished like
        the image) as ``Scene.backdrop``: what the picture shows where the objects are not. It
        draws nothing from ``rng``, so the scene is the same either way.
    """
    big = side * DRAW_SCALE
    if kinds is None:
        n = int(rng.integers(1, 4)) if n_objects is None else n_objects
        kinds = [CLASSES[int(k)] for k in rng.integers(0, len(CLASSES), n)]
    if n_distractors is None:
        n_distractors = int(rng.integers(0, 4))
    # The background is a smooth gradient plus 8x8 noise upsampled: drawn at the output size and
    # enlarged, it looks the same after the final downsampling and costs 1/16 of drawing it at 4x.
    img = background(rng, side, side).resize((big, big), Image.BILINEAR)
    for _ in range(n_distractors):
        _draw_distractor(rng, img, big)
    plain = img.copy() if backdrop else None

    label_big = np.zeros((big, big), dtype=np.uint8)
    own_masks: list[np.ndarray] = []
    for i, kind in enumerate(kinds):
        for _attempt in range(60):
            r = rng.uniform(*RADIUS_RANGE) * big
            cx, cy = rng.uniform(r * 0.9, big - r * 0.9, 2)
            angle = rng.uniform(0, 2 * math.pi)
            mask = _object_mask(kind, cx, cy, r, angle, big)
            trial = label_big.copy()
            trial[mask] = i + 1
            # every object so far, this one included, keeps most of its pixels
            if mask.sum() > 0 and all((trial[m] == j + 1).mean() >= MIN_VISIBLE for j, m in enumerate(own_masks + [mask])):
                break
        label_big = trial
        own_masks.append(mask)
        colour = _contrasting_colour(rng, img, cx, cy)
        draw_shape(ImageDraw.Draw(img), kind, cx, cy, r, angle, colour)

    def finish(canvas: Image.Image) -> np.ndarray:
        canvas = canvas.filter(ImageFilter.GaussianBlur(DRAW_SCALE * 0.3))
        return np.asarray(canvas.resize((side, side), Image.BILINEAR, reducing_gap=2.0), dtype=np.uint8)

    image = finish(img)
    instances = _downsample_labels(label_big, len(kinds), side)
    labels = np.array([CLASSES.index(k) for k in kinds], dtype=np.int64)
    boxes = np.zeros((len(kinds), 4), dtype=np.float32)
    for i in range(len(kinds)):
        ys, xs = np.nonzero(instances == i + 1)
        if len(xs) == 0:  # cannot happen with MIN_VISIBLE, but keep the box well formed
            ys, xs = np.nonzero(own_masks[i].reshape(side, DRAW_SCALE, side, DRAW_SCALE).any(axis=(1, 3)))
        boxes[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    semantic = np.where(instances > 0, labels[np.maximum(instances.astype(np.int64) - 1, 0)] + 1, 0).astype(np.uint8)
    return Scene(image=image, boxes=boxes, labels=labels, instances=instances, semantic=semantic,
                 backdrop=None if plain is None else finish(plain))


def make_scenes(n: int, seed: int, **kwargs) -> list[Scene]:
    """``n`` scenes from one Generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    return [make_scene(rng, **kwargs) for _ in range(n)]


def training_parser(doc: str | None, *, model: str, eval_dir: str, train: int, epochs: int, test: int, test_help: str,
                    eval_option: tuple[str, int], no_train_help: str) -> argparse.ArgumentParser:
    """The command line the scene-trained scripts share (detector, segmenter, embedder): only defaults differ."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=train, help="training scenes")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--test", type=int, default=test, help=test_help)
    parser.add_argument(eval_option[0], type=int, default=eval_option[1])
    parser.add_argument("--no-train", action="store_true", help=no_train_help)
    parser.add_argument("--out", type=Path, default=HERE / model)
    parser.add_argument("--eval-dir", type=Path, default=HERE / eval_dir)
    return parser


def augment(gen, images, maps):
    """The same random transpose and flips for images (B, C, H, W) and their label maps (B, H, W), then a
    random RGB order (colours are arbitrary): the segmenter's and embedder's training augmentation.

    Draws from the torch Generator ``gen`` in a fixed order, so a seeded run stays the same run.
    """
    import torch

    flip_x, flip_y, transpose = torch.randint(0, 2, (3,), generator=gen).tolist()
    if transpose:
        images, maps = images.transpose(2, 3), maps.transpose(1, 2)
    if flip_x:
        images, maps = images.flip(3), maps.flip(2)
    if flip_y:
        images, maps = images.flip(2), maps.flip(1)
    return images[:, torch.randperm(3, generator=gen)], maps


if __name__ == "__main__":  # a quick look: python sample_models/scenes.py OUT.png
    import time

    start = time.time()
    scenes = make_scenes(16, seed=0)
    print(f"16 scenes in {time.time() - start:.2f}s")
    sheet = Image.new("RGB", (SIDE * 8, SIDE * 4))
    for k, sc in enumerate(scenes):
        im = Image.fromarray(sc.image)
        d = ImageDraw.Draw(im)
        for b, lab in zip(sc.boxes, sc.labels):
            d.rectangle([b[0], b[1], b[2] - 1, b[3] - 1], outline=(255, 0, 0))
            d.text((b[0] + 1, b[1]), CLASSES[int(lab)][:2], fill=(255, 255, 255))
        sheet.paste(im, ((k % 4) * 2 * SIDE, (k // 4) * SIDE))
        sheet.paste(Image.fromarray(sc.semantic * 50).convert("RGB"), ((k % 4) * 2 * SIDE + SIDE, (k // 4) * SIDE))
    sheet.save(sys.argv[1] if len(sys.argv) > 1 else "/tmp/scenes.png")
