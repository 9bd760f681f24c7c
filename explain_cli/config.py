"""The typed run configuration shared by `explain run`, YAML configs and the batch runner.

Precedence (enforced where configs are merged): command line > job > defaults > these field defaults.
Field names equal CLI option names (dashes for underscores) and YAML keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunConfig:
    method: str = "lime"  # lime | kernelshap | rise | permutation | ablation
    seed: int = 0  # drives every random choice (sampling, masks, permutations, random weights)
    out: str = "explanations"  # output folder
    weights: str | None = None  # torchvision:ARCH only: state-dict file, DEFAULT, or None (random)
    target: list[str] = field(default_factory=lambda: ["auto"])  # auto | class index | label, repeatable
    top_k: int = 1  # with target auto: explain the K highest-scoring classes
    labels: str | None = None  # class names: text file (one per line) or JSON list
    segments: str | None = None  # slic | quickshift | felzenszwalb | watershed | grid; None: grid for permutation, else slic
    n_segments: int | None = None  # target number of superpixels (slic, watershed, grid)
    compactness: float | None = None  # slic / watershed compactness
    seg_params: dict[str, Any] = field(default_factory=dict)  # other segmenter parameters
    baseline: str = "zero"  # zero | mean | blur | value:R,G,B
    preprocess: str = "auto"  # auto | model | imagenet | none
    size: str | None = None  # H or H,W: resize the whole image to this (no crop)
    mean: str | None = None  # per-channel normalisation mean, comma-separated
    std: str | None = None  # per-channel normalisation std, comma-separated
    output: str = "probs"  # logits | probs: the output space explained
    batch_size: str = "auto"  # model evaluations per forward pass, or auto
    device: str = "auto"  # auto | cpu | cuda[:N] | mps
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast, CUDA only)
    # Engine parameters: None takes the engine's default.
    samples: int | None = None  # lime, kernelshap: model evaluations
    kernel_width: float | None = None  # lime: kernel width σ
    distance: str | None = None  # lime: cosine | euclidean
    surrogate: str | None = None  # lime: ridge | lasso | linear
    alpha: float | None = None  # lime: surrogate penalty (relative)
    exact: bool | None = None  # kernelshap: enumerate all 2^M coalitions
    allocation: str | None = None  # kernelshap: kernel | leverage
    bootstrap: int | None = None  # kernelshap: bootstrap resamples for standard errors
    masks: int | None = None  # rise: number of random masks
    grid: int | None = None  # rise: coarse mask grid size s
    p1: float | None = None  # rise: probability a grid cell keeps the input
    repeats: int | None = None  # permutation: permutations per group
    name: str | None = None  # permutation: output name for the batch (default 'batch')
    # Outputs.
    save_map: bool = False  # also write NAME.METHOD.npy (K, H, W) at the original resolution
    boundaries: bool = True  # draw superpixel boundaries on the PNG
    quiet: bool = False  # no progress bar

    def engine_values(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def segmenter(self, batch: bool) -> str:
        """The segmentation algorithm: as configured, else grid for batch methods and slic otherwise."""
        return self.segments or ("grid" if batch else "slic")

    def segmentation_params(self) -> dict[str, Any]:
        params = dict(self.seg_params)
        if self.n_segments is not None:
            params["n_segments"] = self.n_segments
        if self.compactness is not None:
            params["compactness"] = self.compactness
        return params
