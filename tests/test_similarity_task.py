"""The similarity task: the reference baseline's exact zeros, zero-shot = classification on τ·cos, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain_cli.core import Evaluator, Problem
from explain_cli.engines import build_params, get_engine
from explain_cli.errors import ExplainError, OptionError
from explain_cli.tasks import ClassificationTask, SimilarityTask, TargetRequest, get_task, reference_targets
from explain_cli.tasks.similarity import reference_baseline

SIZE = (32, 32)
D = 6


def grid_segments(h: int = 32, w: int = 32, cell: int = 8) -> torch.Tensor:
    return ((torch.arange(h)[:, None] // cell) * (w // cell) + torch.arange(w)[None, :] // cell).long()


SEGMENTS = grid_segments()
M = 16


class SegmentMeanEmbedder(torch.nn.Module):
    """e(x) = A · m(x) + c, m(x) the (C · M) per-channel means of the 16 grid segments: linear in segment means."""

    def __init__(self, dim: int = D, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.randn(dim, 3 * M, generator=g, dtype=torch.float64)
        self.c = torch.randn(dim, generator=g, dtype=torch.float64)
        one_hot = torch.nn.functional.one_hot(SEGMENTS.flatten(), M).double()  # (H·W, M)
        self.pool = one_hot / one_hot.sum(dim=0)  # column g averages segment g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = x.double().flatten(2) @ self.pool  # (B, 3, M)
        return means.flatten(1) @ self.a.T + self.c


class ZeroShotLogits(torch.nn.Module):
    """A classifier whose logits are τ · cos(e(x), p_k): what zero-shot over prompts p_k must equal."""

    def __init__(self, embedder: torch.nn.Module, prompts: torch.Tensor, tau: float) -> None:
        super().__init__()
        self.embedder, self.prompts, self.tau = embedder, prompts, tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embedder(x)
        return self.tau * torch.nn.functional.cosine_similarity(e[:, None], self.prompts[None], dim=2, eps=1e-12)


def picture(seed: int = 1) -> torch.Tensor:
    return torch.rand(3, *SIZE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def run_engine(name, problem, seed=0, **values):
    engine = get_engine(name)
    return engine.run(problem, build_params(engine, values), torch.Generator().manual_seed(seed))


def explain(model, task, x, baseline, request=None, batch_size=32):
    evaluator = Evaluator(model, torch.device("cpu"), batch_size=batch_size)
    targets, reference = reference_targets(task, evaluator, x[None], request or TargetRequest(size=SIZE))
    problem = Problem(x=x, baseline=baseline, segments=SEGMENTS, evaluator=evaluator, reference=reference[0])
    return problem, targets


# ------------------------------------------------------------------ baseline="reference"


@pytest.mark.parametrize("method, values", [("ablation", {}), ("kernelshap", {"samples": 200})])
def test_reference_baseline_gives_zero_outside_the_one_differing_segment(method, values):
    model = SegmentMeanEmbedder()
    x = picture(1)
    ref = x.clone()
    differing = 6
    ref[:, SEGMENTS == differing] = 8 * picture(2)[:, SEGMENTS == differing] - 4  # the images differ in segment 6 only
    task = SimilarityTask.from_reference_image(model, ref)
    problem, (target,) = explain(model, task, x, reference_baseline(ref, x))
    cos = torch.nn.functional.cosine_similarity(model(x[None]), model(ref[None]), eps=1e-12).item()
    assert target.score == pytest.approx(cos, abs=1e-12) and target.kind == "reference" and target.reference == "image"
    result = run_engine(method, problem, **values)
    others = np.delete(result.scores[0], differing)
    # Zero up to the core's compose rounding: b + (x − b)·1 (addcmul) may differ from x in the last bit,
    # so f(x) and f(x composed with every segment kept) can differ by ~1e-14 here.
    assert np.abs(others).max() < 1e-12
    if method == "ablation":  # every perturbed input keeping the differing segment is bitwise the same input
        assert len(set(others.tolist())) == 1
    assert result.scores[0].sum() == pytest.approx(cos - 1.0, abs=1e-12)
    assert result.scores[0, differing] == pytest.approx(cos - 1.0, abs=1e-12)
    assert result.baseline_score[0] == pytest.approx(1.0, abs=1e-12)  # f(ref) = cos(ref, ref)
    assert cos < 0.95  # the differing segment matters


def test_reference_baseline_needs_the_input_size_and_copies():
    x = picture()
    ref = picture(3).float()
    out = reference_baseline(ref, x)
    assert out.dtype == x.dtype and torch.equal(out, ref.double()) and out.data_ptr() != ref.data_ptr()
    with pytest.raises(OptionError, match="baseline reference needs a reference image of the input's size"):
        reference_baseline(torch.zeros(3, 16, 32), x)


# ------------------------------------------------------------------ zero-shot = classification on τ·cos


@pytest.mark.parametrize("tau", [100.0, 7.5])
@pytest.mark.parametrize("target, top_k", [(("auto",), 2), (("lamp", "0"), None)])
def test_zero_shot_equals_classification_on_tau_cos(tau, target, top_k):
    embedder = SegmentMeanEmbedder(seed=1)
    x = picture(4)
    g = torch.Generator().manual_seed(9)
    e_x = embedder(x[None])[0]
    prompts = torch.stack([e_x + 0.3 * torch.randn(D, generator=g, dtype=torch.float64) * e_x.norm()
                           for _ in range(4)])  # near the input: a softmax that is not one-hot
    labels = ["cat", "dog", "lamp", "tree"]
    runs = []
    for model, task in ((embedder, SimilarityTask(prompts, temperature=tau)),
                        (ZeroShotLogits(embedder, prompts, tau), ClassificationTask("probs"))):
        request = TargetRequest(target=target, top_k=top_k, labels=labels, size=SIZE)
        problem, targets = explain(model, task, x, torch.zeros_like(x), request)
        runs.append((targets, problem.reference, run_engine("kernelshap", problem, seed=2, samples=120)))
    (zs_targets, zs_ref, zs), (cl_targets, cl_ref, cl) = runs
    assert [(t.index, t.label) for t in zs_targets] == [(t.index, t.label) for t in cl_targets]
    np.testing.assert_allclose([t.score for t in zs_targets], [t.score for t in cl_targets], rtol=0, atol=1e-6)
    torch.testing.assert_close(zs_ref, cl_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(zs.scores, cl.scores, rtol=0, atol=1e-6)
    np.testing.assert_allclose(zs.baseline_score, cl.baseline_score, rtol=0, atol=1e-6)
    assert np.abs(zs.scores).max() > 0.05 and 0.1 < zs_targets[0].score < 1.0  # a test that could fail
    assert zs_targets[0].kind == "prompt" and zs_targets[0].overlay()["prompt"] == zs_targets[0].label


def test_cosine_by_hand_and_a_zero_embedding_scores_zero():
    task = SimilarityTask([3.0, 4.0, 0.0])
    out = task.decode(torch.tensor([[4.0, 3.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]), SIZE)
    (target,) = task.targets(out[:1], TargetRequest(size=SIZE))
    assert target.score == pytest.approx(24 / 25, abs=1e-15) and target.index is None
    scores = task.score(out, [target], SIZE)
    torch.testing.assert_close(scores[:, 0], torch.tensor([0.96, 0.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-15)
    assert task.params() == {"task": "similarity", "reference": "vector", "dimensions": 3,
                             "score": "cos(embedding, reference)"}
    assert target.describe() == {"index": None, "label": "reference", "score": pytest.approx(0.96), "kind": "reference",
                                 "cosine": pytest.approx(0.96), "reference": "vector"}
    assert target.overlay()["thumbnail"] is None


def test_reference_image_thumbnail_reaches_the_panel_and_the_model_labels_never_name_prompts():
    model = SegmentMeanEmbedder()
    thumb = np.zeros((8, 8, 3))
    task = SimilarityTask.from_reference_image(model, picture(5), thumbnail=thumb)
    (target,) = task.targets(task.decode(model(picture()[None]), SIZE), TargetRequest(size=SIZE))
    assert target.overlay()["thumbnail"] is thumb and "reference image" in target.caption()
    zero_shot = SimilarityTask(torch.randn(3, D, generator=torch.Generator().manual_seed(0)))
    fx = zero_shot.decode(model(picture()[None]), SIZE)
    imagenet = [f"class {i}" for i in range(1000)]
    (top,) = zero_shot.targets(fx, TargetRequest(labels=imagenet, labels_source="model", size=SIZE))
    assert top.label is None and top.caption().startswith(f"prompt {top.index}: p ")


# ------------------------------------------------------------------ bad input: one line each


@pytest.mark.parametrize("reference, match", [
    (torch.zeros(D), "reference is a zero vector"),
    (torch.stack([torch.ones(D), torch.zeros(D)]), "row 1 is a zero vector"),
    (torch.ones(2, 3, 4), "must be a \\(D,\\) embedding or \\(K, D\\) prompt embeddings"),
    (np.array([1.0, np.nan]), "NaN or infinite"),
    (None, "is required for task similarity"),
    ("prompts.npy", "is a path: the front door reads it"),
])
def test_bad_references_are_refused(reference, match):
    with pytest.raises(OptionError, match=match) as info:
        SimilarityTask(reference)
    assert info.value.option == "reference" and "\n" not in str(info.value)


def test_bad_outputs_labels_targets_and_temperatures_are_one_line_errors():
    task = SimilarityTask(torch.ones(D + 1))
    with pytest.raises(OptionError, match="reference has the wrong dimension: the reference has 7 values but the "
                                          "model's embeddings have 6"):
        task.decode(torch.ones(2, D), SIZE)
    for raw in (torch.ones(2, D, 1, 1), torch.ones(3)):
        with pytest.raises(ExplainError, match="not \\(batch, dimensions\\)"):
            task.decode(raw, SIZE)
    with pytest.raises(ExplainError, match="returned dict"):
        task.decode({"out": torch.ones(2, D)}, SIZE)
    prompts = SimilarityTask(torch.eye(D)[:3] + 0.1)
    fx = prompts.decode(torch.ones(1, D), SIZE)
    with pytest.raises(OptionError, match="labels gives 2 names but the reference has 3 prompt embeddings"):
        prompts.targets(fx, TargetRequest(labels=["a", "b"], size=SIZE))
    with pytest.raises(OptionError, match="target 'kite' is not one of"):
        prompts.targets(fx, TargetRequest(target=("kite",), labels=["a", "b", "c"], size=SIZE))
    single = SimilarityTask(torch.ones(D))
    with pytest.raises(OptionError, match="target names prompts, but the reference is one embedding"):
        single.targets(single.decode(torch.ones(1, D), SIZE), TargetRequest(target=("cat",), size=SIZE))
    for tau in (0, -1, float("inf"), "warm"):
        with pytest.raises(OptionError, match="temperature must be a positive number"):
            SimilarityTask(torch.ones(D), temperature=tau)
    with pytest.raises(ExplainError, match="returned 2 embeddings for one reference image"):
        SimilarityTask.from_reference_output(torch.ones(2, D))
    with pytest.raises(OptionError, match="applies to task similarity, not segmentation"):
        get_task("segmentation", temperature=10)


def test_registry_builds_zero_shot_with_its_temperature():
    task = get_task("similarity", reference=np.eye(3), temperature=10)
    assert task.zero_shot and task.n_prompts == 3 and task.output_space == "zero-shot probs"
    assert task.params()["temperature"] == 10.0 and task.params()["prompts"] == 3
