"""Multiple-choice accuracy agrees with lm-evaluation-harness on the same data, model and prompt.

lm-eval (a development dependency) scores the bundled task through its own task config and its
Hugging Face model class; our runner scores it through the eval job. acc and acc_norm must be
equal, and every choice's log-likelihood close.
"""

from __future__ import annotations

import pytest

from workbench.evaluate.runner import run_eval
from workbench.evaluate.suites import bundled_task
from workbench.recipes import EvalRecipe

lm_eval = pytest.importorskip("lm_eval")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["knowledge-en", "knowledge-zh", "reasoning-en"])
def test_accuracy_equals_lm_evaluation_harness(workspace, tiny_artifact, name):
    from workbench.evaluate.reference import lm_eval_multiple_choice
    from workbench.models import load_model

    limit = 16
    ours = run_eval(
        EvalRecipe(models=[tiny_artifact], tasks=[name], limit=limit, dtype="float32"),
        workspace=workspace,
    )
    values = {r["metric"]: r["value"] for r in ours["metrics"]}
    loaded = load_model(tiny_artifact, workspace, dtype="float32")
    task = bundled_task(name)
    reference = lm_eval_multiple_choice(task, loaded.model, loaded.tokenizer, limit=limit)
    assert values["acc"] == pytest.approx(reference["acc"], abs=1e-9)
    assert values["acc_norm"] == pytest.approx(reference["acc_norm"], abs=1e-9)

    import json

    folder = workspace.path_of(ours["artifact"])
    lines = [json.loads(x) for x in (folder / "samples.jsonl").read_text("utf-8").splitlines()]
    by_id = {line["id"]: line["details"]["logliks"] for line in lines}
    for sample, theirs in zip(task.samples[:limit], reference["logliks"], strict=True):
        assert by_id[sample["id"]] == pytest.approx(theirs, abs=1e-3)
