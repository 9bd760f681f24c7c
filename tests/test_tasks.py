"""The task interface: classification through it gives today's numbers exactly; the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain_cli.core import Evaluator, Problem
from explain_cli.engines import build_params, get_engine
from explain_cli.errors import ExplainError, OptionError
from explain_cli.targets import resolve_targets
from explain_cli.tasks import ClassificationTask, TargetRequest, get_task, reference_targets
from tests.conftest import make_linear


def inputs(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def todays_path(model, x, output, target, top_k, batch_size=2):
    """What api.Explainer does without tasks: all outputs of f(x), resolve_targets, select_targets."""
    ev = Evaluator(model, torch.device("cpu"), batch_size=batch_size, output=output)
    outputs = np.concatenate([ev(x[a:b].clone()).numpy() for a, b in ev.chunks(len(x))])
    chosen = resolve_targets(list(target), top_k, outputs.mean(axis=0), ["ant", "bee", "cat"])
    ev.select_targets(chosen)
    return ev, chosen, torch.from_numpy(outputs[:, chosen])


def task_path(model, x, output, target, top_k, batch_size=2):
    ev = Evaluator(model, torch.device("cpu"), batch_size=batch_size)
    request = TargetRequest(target=tuple(target), top_k=top_k, labels=["ant", "bee", "cat"])
    targets, reference = reference_targets(ClassificationTask(output), ev, x, request)
    return ev, targets, reference


@pytest.mark.parametrize("output", ["probs", "logits"])
@pytest.mark.parametrize("target, top_k", [(["auto"], 2), (["cat", "0"], 1)])
def test_classification_task_gives_todays_numbers_exactly(output, target, top_k):
    model = make_linear()
    x = inputs(3)  # three inputs in chunks of two: f(x) is chunked and averaged like today
    old_ev, chosen, old_reference = todays_path(model, x, output, target, top_k)
    new_ev, targets, reference = task_path(model, x, output, target, top_k)
    assert [t.index for t in targets] == chosen
    assert [t.label for t in targets] == [["ant", "bee", "cat"][i] for i in chosen]
    assert torch.equal(reference, old_reference)
    assert [t.score for t in targets] == pytest.approx(old_reference.mean(dim=0).tolist(), abs=0)
    assert new_ev.evaluations == old_ev.evaluations == 3
    perturbed = inputs(5, seed=1)
    assert torch.equal(new_ev(perturbed), old_ev(perturbed))


def test_kernelshap_through_the_task_equals_todays_run():
    model = make_linear()
    x = inputs(1)
    segments = (torch.arange(16)[:, None] // 4 * 4 + torch.arange(16)[None, :] // 4).long()
    results = []
    for path in (todays_path, task_path):
        ev, _, reference = path(model, x, "probs", ["auto"], 2, batch_size=16)
        problem = Problem(x=x[0], baseline=torch.zeros_like(x[0]), segments=segments, evaluator=ev,
                          reference=reference[0].double())
        engine = get_engine("kernelshap")
        results.append(engine.run(problem, build_params(engine, {"samples": 100}), torch.Generator().manual_seed(3)))
    assert np.array_equal(results[0].scores, results[1].scores)


def test_single_output_is_a_sigmoid_and_bad_outputs_are_clear():
    task = ClassificationTask()
    raw = torch.tensor([[0.0], [2.0]])
    torch.testing.assert_close(task.decode(raw, (4, 4)), torch.sigmoid(raw.double()))
    with pytest.raises(ExplainError, match="not \\(batch, classes\\)"):
        task.decode(torch.zeros(2, 3, 4, 4), (4, 4))
    with pytest.raises(ExplainError, match="returned dict"):
        task.decode({"out": torch.zeros(2, 3)}, (4, 4))
    with pytest.raises(OptionError, match="logits or probs"):
        ClassificationTask("softmax")
    with pytest.raises(OptionError, match="more than the model's 3 outputs"):
        task.targets(task.decode(torch.zeros(1, 3), (4, 4)), TargetRequest(top_k=5))


def test_per_image_tasks_refuse_several_inputs():
    ev = Evaluator(lambda x: [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}] * len(x),
                   torch.device("cpu"))
    with pytest.raises(ExplainError, match="one image at a time"):
        reference_targets(get_task("detection"), ev, inputs(2), TargetRequest())
    assert ev.evaluations == 0
