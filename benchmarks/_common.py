"""What the benchmarks share: one explanation problem built the way `explain run` builds it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain_cli.core import Evaluator, Problem  # noqa: E402
from explain_cli.inputs import load_input  # noqa: E402
from explain_cli.options.parse import parse_size  # noqa: E402
from explain_cli.models import load_model  # noqa: E402
from explain_cli.preprocess import apply_preprocess, resolve_preprocess  # noqa: E402
from explain_cli.segmentation import segment, to_segmentation_space  # noqa: E402

IMAGE = ROOT / "sample_models" / "images" / "triangle_square.png"
SAMPLE_MODEL = str(ROOT / "sample_models" / "shapes_cnn.pt")


def build_problem(source: str, *, output: str = "probs", size: str | None = None, n_segments: int = 50,
                  batch_size: int = 64, image: Path = IMAGE, algorithm: str = "slic"):
    """(model, problem) for an image: superpixels (SLIC unless ``algorithm`` says otherwise), zero baseline, the top class as target."""
    model = load_model(source, device="cpu", seed=0)
    item = load_input(image)
    spec = resolve_preprocess("auto", model_default=model.preprocess, input_kind="image",
                              size=parse_size(size) if size else None)
    prepared = apply_preprocess(item.pixels, spec)
    seg = segment(to_segmentation_space(prepared.pixels.numpy(), rescale=False), algorithm, n_segments=n_segments)
    ev = Evaluator(model.module, model.device, batch_size=batch_size, output=output)
    ref = ev(prepared.x[None])[0]
    target = int(ref.argmax())
    ev.select_targets([target])
    problem = Problem(x=prepared.x, baseline=torch.zeros_like(prepared.x), segments=torch.from_numpy(seg.labels),
                      evaluator=ev, reference=ref[[target]].cpu())
    return model, problem


def time_forward(module: Callable, x: torch.Tensor, evaluations: int, batch_size: int,
                 head: Callable[[Any], Any] = lambda out: out) -> float:
    """Seconds for the model alone on ready-made batches of ``x`` (C, H, W), ``head`` applied to each
    output (e.g. the softmax a classifier's scores need): the floor any engine can reach."""
    batch = x.expand(batch_size, *x.shape).contiguous()
    start = time.perf_counter()
    with torch.inference_mode():
        done = 0
        while done < evaluations:
            n = min(batch_size, evaluations - done)
            head(module(batch[:n]))
            done += n
    return time.perf_counter() - start
