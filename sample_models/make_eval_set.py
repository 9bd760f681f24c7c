"""Write the ground-truth evaluation set: one small shape per image, with its mask.

Each image holds exactly ONE shape (circle, square, triangle or cross) on the textured backgrounds
the sample model was trained on, so the class is decided by that object and its mask says where
an explanation should point. Objects cover about 5-20% of the image; every third image also gets
a patch of coloured noise as a distractor texture. Images are 64x64, the size the sample model's
embedded preprocessing resizes to, so the model sees the pixels as written and a mask pixel is a
model pixel (no resampling between map and mask).

Only images the shipped model classifies correctly are kept (at most ``--keep-per-class`` per
class, in generation order); the accuracy before filtering is recorded in the index. The model
was trained on objects of about 2-15% of the image and misreads squares and crosses larger than
that, so the kept squares and crosses are the smaller ones. Deterministic: the same seed writes the same files.

    python sample_models/make_eval_set.py            # writes sample_models/eval/

Output (``sample_models/eval/``): ``NAME.png`` (RGB), ``NAME.mask.png`` (L, 0 background /
255 object) and ``index.json`` listing image, mask, label, class index, object area and bbox.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # train_shapes is a script beside this one, not a package module
sys.path.insert(1, str(HERE.parent))  # explain_cli, when run from a checkout without installing

from train_shapes import CLASSES, DRAW_SCALE, SIZE, background, draw_shape  # noqa: E402

#: Area of a shape of "radius" r is AREA_FACTOR[kind] · r², from draw_shape's geometry: circle
#: πr²; square of half-diagonal 0.85·0.75·√2·r; equilateral triangle of circumradius r; cross of
#: two 2r × 0.66r arms sharing a 0.66r square.
AREA_FACTOR = {
    "circle": math.pi,
    "square": 2 * (0.85 * 0.75 * math.sqrt(2)) ** 2,
    "triangle": 3 * math.sqrt(3) / 4,
    "cross": 2 * (2 * 0.66) - 0.66**2,
}


def make_item(rng: np.random.Generator, kind: str, size: int, *, distractor: bool) -> tuple[Image.Image, np.ndarray]:
    """One image with a single ``kind`` shape and its boolean (size, size) mask."""
    big = size * DRAW_SCALE
    img = background(rng, big, big)
    area = rng.uniform(0.05, 0.20)  # share of the image the object covers
    r = math.sqrt(area * big * big / AREA_FACTOR[kind])
    margin = r * 1.02
    cx, cy = rng.uniform(margin, big - margin), rng.uniform(margin, big - margin)
    angle = rng.uniform(0, 2 * math.pi)
    if distractor:  # coloured noise away from the object: texture, not a shape of any class
        side = int(big * rng.uniform(0.15, 0.22))
        for _ in range(50):
            px, py = rng.integers(0, big - side, 2)
            if math.hypot(px + side / 2 - cx, py + side / 2 - cy) > r + side * 0.75:
                break
        noise = rng.uniform(0, 255, (side // DRAW_SCALE, side // DRAW_SCALE, 3)).astype(np.uint8)
        img.paste(Image.fromarray(noise).resize((side, side), Image.NEAREST), (int(px), int(py)))
    bg = np.asarray(img, dtype=np.float64)[int(cy), int(cx)]
    while True:  # a colour that stands out from the background under it, as in training
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - bg).sum() > 180:
            break
    draw_shape(ImageDraw.Draw(img), kind, cx, cy, r, angle, tuple(int(v) for v in colour))
    img = img.filter(ImageFilter.GaussianBlur(DRAW_SCALE * 0.3))
    image = img.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    # The mask is drawn with the same geometry and area-averaged, so a mask pixel is "object" when
    # at least half of it is covered.
    canvas = Image.new("L", (big, big), 0)
    draw_shape(ImageDraw.Draw(canvas), kind, cx, cy, r, angle, (255,))
    coverage = np.asarray(canvas.resize((size, size), Image.BOX), dtype=np.float64) / 255.0
    return image, coverage >= 0.5


def classify(model_path: Path, images: list[Image.Image]) -> np.ndarray:
    """Class probabilities (N, n_classes) through explain_cli's own loading and preprocessing."""
    import torch

    from explain_cli.models import load_model
    from explain_cli.preprocess import apply_preprocess

    model = load_model(str(model_path), device="cpu")
    xs = []
    for image in images:
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        xs.append(apply_preprocess(pixels, model.preprocess).x)
    with torch.inference_mode():
        return torch.softmax(model.module(torch.stack(xs)), dim=1).double().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=20, help="candidate images per class before filtering")
    parser.add_argument("--keep-per-class", type=int, default=12,
                        help="correctly classified images kept per class, so the classes stay balanced")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--model", type=Path, default=HERE / "shapes_cnn.pt")
    parser.add_argument("--out", type=Path, default=HERE / "eval")
    args = parser.parse_args()

    from explain_cli.fileio import sha256_file

    rng = np.random.default_rng(args.seed)
    candidates = []
    for i in range(args.per_class):
        for kind in CLASSES:
            image, mask = make_item(rng, kind, SIZE, distractor=(len(candidates) % 3 == 2))
            candidates.append((f"{kind}_{i:02d}", kind, image, mask, len(candidates) % 3 == 2))
    probs = classify(args.model, [c[2] for c in candidates])
    predicted = probs.argmax(axis=1)
    truth = np.array([CLASSES.index(c[1]) for c in candidates])
    correct = predicted == truth

    args.out.mkdir(parents=True, exist_ok=True)
    for old in list(args.out.glob("*.png")):  # a rerun must not leave images of a previous seed behind
        old.unlink()
    items = []
    kept = dict.fromkeys(CLASSES, 0)
    for (name, kind, image, mask, distractor), p, ok in zip(candidates, probs, correct):
        if not ok or kept[kind] >= args.keep_per_class:
            continue
        kept[kind] += 1
        image.save(args.out / f"{name}.png", optimize=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(args.out / f"{name}.mask.png", optimize=True)
        rows, cols = np.nonzero(mask)
        items.append({
            "image": f"{name}.png",
            "mask": f"{name}.mask.png",
            "label": kind,
            "class_index": CLASSES.index(kind),
            "area_fraction": round(float(mask.mean()), 4),
            "bbox": [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1],  # top, left, bottom, right
            "distractor": distractor,
            "probability": round(float(p[CLASSES.index(kind)]), 4),
        })
    per_class = {k: round(float(correct[truth == i].mean()), 4) for i, k in enumerate(CLASSES)}
    index = {
        "format": 1,
        "generated_by": "sample_models/make_eval_set.py",
        "seed": args.seed,
        "size": [SIZE, SIZE],
        "classes": CLASSES,
        "model": args.model.name,
        "model_sha256": sha256_file(args.model),
        "candidates": len(candidates),
        "accuracy_before_filtering": round(float(correct.mean()), 4),
        "accuracy_per_class": per_class,
        "mask_encoding": "8-bit greyscale PNG, 255 = object, 0 = background, same size as the image",
        "items": items,
    }
    (args.out / "index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"{len(items)} of {len(candidates)} candidates kept (accuracy {correct.mean():.3f}, per class {per_class}); "
          f"{total / 1e3:.0f} kB in {args.out}")


if __name__ == "__main__":
    main()
