"""Train the shipped sample model: a small CNN that names the shapes in a synthetic image.

Deterministic (fixed seeds, one thread, deterministic kernels) and offline: the script draws its
own data. Images hold one or two shapes (circle, square, triangle, cross) on a textured
background; the target spreads probability evenly over the shapes present, so an image with two
shapes has two top classes and `explain run --top-k 2` shows one map per shape.

    python sample_models/train_shapes.py            # writes shapes_cnn.pt and images/*.png

The TorchScript archive embeds explain_cli.json (labels and preprocessing), which
`explain run` reads, so no --labels or --size is needed.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ["circle", "square", "triangle", "cross"]
SIZE = 64  # model input side
DRAW_SCALE = 4  # draw at 4x and downsample: smooth edges, like a resized photo
HERE = Path(__file__).resolve().parent


def background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A smooth two-colour gradient with soft low-frequency blotches."""
    c0, c1 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    noise = rng.normal(0, 1, (8, 8, 3))
    noise = np.asarray(Image.fromarray(((noise - noise.min()) / np.ptp(noise) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), dtype=np.float64)
    img = img + (noise - 128) * 0.25
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, angle: float, colour: tuple) -> None:
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        return
    if kind == "square":
        pts = [(r * 0.85 * math.cos(angle + k * math.pi / 2 + math.pi / 4) * math.sqrt(2),
                r * 0.85 * math.sin(angle + k * math.pi / 2 + math.pi / 4) * math.sqrt(2)) for k in range(4)]
        pts = [(cx + x * 0.75, cy + y * 0.75) for x, y in pts]
    elif kind == "triangle":
        pts = [(cx + r * math.cos(angle + k * 2 * math.pi / 3), cy + r * math.sin(angle + k * 2 * math.pi / 3)) for k in range(3)]
    elif kind == "cross":
        a, b = r, r * 0.33
        arm = [(-a, -b), (a, -b), (a, b), (-a, b)]
        for rot in (angle, angle + math.pi / 2):
            c, s = math.cos(rot), math.sin(rot)
            draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in arm], fill=colour)
        return
    else:
        raise ValueError(kind)
    draw.polygon(pts, fill=colour)


def make_image(rng: np.random.Generator, kinds: list[str], h: int, w: int) -> Image.Image:
    """Draw ``kinds`` (one or two shapes) without overlap on a textured background."""
    big_h, big_w = h * DRAW_SCALE, w * DRAW_SCALE
    img = background(rng, big_h, big_w)
    draw = ImageDraw.Draw(img)
    side = min(big_h, big_w)
    placed: list[tuple[float, float, float]] = []
    for kind in kinds:
        for _ in range(100):
            r = rng.uniform(0.13, 0.22) * side
            cx, cy = rng.uniform(r, big_w - r), rng.uniform(r, big_h - r)
            if all(math.hypot(cx - px, cy - py) > (r + pr) * 1.05 for px, py, pr in placed):
                break
        placed.append((cx, cy, r))
        bg = np.asarray(img, dtype=np.float64)[int(cy), int(cx)]
        while True:  # a colour that stands out from the background under it
            colour = rng.uniform(0, 255, 3)
            if np.abs(colour - bg).sum() > 180:
                break
        draw_shape(draw, kind, cx, cy, r, rng.uniform(0, 2 * math.pi), tuple(int(v) for v in colour))
    img = img.filter(ImageFilter.GaussianBlur(DRAW_SCALE * 0.3))
    return img.resize((w, h), Image.BILINEAR, reducing_gap=2.0)


def make_dataset(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for _ in range(n):
        count = 1 if rng.random() < 0.5 else 2
        kinds = list(rng.choice(CLASSES, size=count, replace=False))
        img = make_image(rng, kinds, SIZE, SIZE)
        images.append(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0)
        target = np.zeros(len(CLASSES), dtype=np.float32)
        for kind in kinds:
            target[CLASSES.index(kind)] = 1.0 / count
        targets.append(target)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(targets))


class ShapesCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU blocks and global average pooling: about 90k parameters."""

    def __init__(self, n_classes: int = len(CLASSES)) -> None:
        super().__init__()
        chans = [3, 24, 48, 64, 96]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def deterministic(threads: int = 2) -> None:
    """Seed torch, fix its thread count and insist on deterministic kernels: the same run, the same model
    (this script's, and the scene-trained ones' through scenes.py)."""
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=8000, help="training images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "shapes_cnn.pt")
    args = parser.parse_args()

    deterministic(threads=1)
    start = time.time()
    x_train, y_train = make_dataset(args.train, seed=1)
    x_test, y_test = make_dataset(1000, seed=2)
    mean, std = 0.5, 0.25
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    print(f"data: {len(x_train)} train, {len(x_test)} test ({time.time() - start:.0f}s)")

    model = ShapesCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = args.epochs * math.ceil(len(x_train) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            xb = x_train[idx]
            if torch.rand(1, generator=gen).item() < 0.5:
                xb = xb.flip(3)
            loss = -(y_train[idx] * F.log_softmax(model(xb), dim=1)).sum(dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = evaluate(model, x_test, y_test)
        print(f"epoch {epoch + 1}: loss {total / len(x_train):.4f}, test top-k accuracy {acc:.3f} ({time.time() - start:.0f}s)")

    model.eval()
    scripted = torch.jit.script(model)
    metadata = {
        "name": "shapes_cnn",
        "labels": CLASSES,
        "in_channels": 3,
        "preprocess": {"size": [SIZE, SIZE], "mean": [mean] * 3, "std": [std] * 3},
        "trained_by": "sample_models/train_shapes.py",
        "test_topk_accuracy": round(acc, 4),
    }
    scripted.save(str(args.out), _extra_files={"explain_cli.json": json.dumps(metadata)})
    print(f"saved {args.out} ({args.out.stat().st_size / 1e3:.0f} kB), accuracy {acc:.3f}")
    write_samples()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of images whose top-c predicted classes are exactly the c shapes present."""
    model.eval()
    pred = model(x)
    correct = 0
    for p, t in zip(pred, y):
        c = int((t > 0).sum())
        correct += set(p.topk(c).indices.tolist()) == set(t.nonzero().flatten().tolist())
    return correct / len(x)


def write_samples() -> None:
    """The demo images: larger than the model input, so the heatmap is drawn back at full size."""
    rng = np.random.default_rng(7)
    folder = HERE / "images"
    folder.mkdir(exist_ok=True)
    samples = {
        "circle": (["circle"], 256, 256),
        "triangle_square": (["triangle", "square"], 256, 256),
        "cross_circle": (["cross", "circle"], 240, 320),
    }
    for name, (kinds, h, w) in samples.items():
        img = make_image(rng, kinds, h, w)
        img.save(folder / f"{name}.png", optimize=True)
        print(f"wrote {folder / name}.png")


if __name__ == "__main__":
    main()
