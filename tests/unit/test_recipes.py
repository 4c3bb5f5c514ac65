"""Recipes: YAML round-trip for every kind, and errors that name the file, line and field."""

from __future__ import annotations

from dataclasses import MISSING, fields

import pytest

from workbench.errors import InvalidInput
from workbench.recipes import (
    RECIPES,
    PrepareModelRecipe,
    dump_recipe,
    load_recipe,
    recipe_from_dict,
    save_recipe,
)

# One example per kind, with values away from the defaults so a field lost on the way shows.
EXAMPLES = {
    "import_data": {"source": "data/qa.jsonl", "name": "qa", "dedupe": "near", "cutoff": 256},
    "train": {
        "data": "qa",
        "out": "qa-lora",
        "method": "qlora",
        "lora_targets": "q_proj,v_proj",
        "probe_prompts": ["Who are you?", "你是谁？"],
        "device": "cpu",
    },
    "merge": {"adapter": "qa-lora", "out": "qa-merged"},
    "serve": {"model": "qa-merged", "port": 8123, "api_key": "k-1", "gradio": True, "slots": 4},
    "quantize": {
        "model": "qa-merged",
        "method": "int4-awq",
        "group": 64,
        "calib": "qa",
        "out": "qa-awq",
    },
    "eval": {
        "models": ["default", "tiny"],
        "tasks": ["quick", "my_task.jsonl"],
        "limit": 5,
        "judge": "openai:http://127.0.0.1:8000/v1#big",
        "identity_name": "小书生",
    },
    "generate": {
        "model": "tiny",
        "prompts": ["What is the capital of France?", "你好，请介绍一下书生浦语。", "a: b # c"],
        "system": "You are terse.\nAnswer in one line.",
        "max_new_tokens": 32,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 7,
        "device": "cpu",
        "dtype": "float32",
    },
    "prepare_model": {
        "model": "HuggingFaceTB/SmolLM2-360M-Instruct",
        "name": "smollm2-360m",
        "hub": "modelscope",
        "revision": "main",
        "trust_remote_code": True,
    },
}


def example(kind: str) -> dict:
    """EXAMPLES[kind], or for a kind added later, its defaults if they make a valid recipe."""
    if kind in EXAMPLES:
        return {"kind": kind, **EXAMPLES[kind]}
    cls = RECIPES[kind]
    required = [
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    ]
    if required:
        pytest.fail(
            f"Recipe kind {kind!r} has required fields {required}: add an example for it "
            "to EXAMPLES in tests/unit/test_recipes.py."
        )
    return {"kind": kind}


@pytest.mark.parametrize("kind", sorted(RECIPES))
def test_every_recipe_kind_round_trips_through_yaml(kind, tmp_path):
    recipe = recipe_from_dict(example(kind))
    path = tmp_path / "recipe.yaml"
    save_recipe(recipe, path)

    assert path.read_text("utf-8").startswith(f"kind: {kind}\n")
    again = load_recipe(path)
    assert type(again) is type(recipe) and again == recipe
    assert dump_recipe(again) == dump_recipe(recipe)
    assert recipe.runner.count(":") == 1 and recipe.resource() in ("cpu", "gpu")
    assert isinstance(recipe.uses(), list)


def test_an_unknown_field_suggests_the_right_one():
    with pytest.raises(InvalidInput) as typo:
        recipe_from_dict({"kind": "generate", "prompts": ["hi"], "max_new_token": 5})
    assert "max_new_token" in typo.value.what and "'max_new_token'" in typo.value.where
    assert "Did you mean 'max_new_tokens'?" in typo.value.fix


@pytest.mark.parametrize(
    ("field_name", "value", "expected"),
    [
        ("max_new_tokens", "lots", "an integer"),
        ("max_new_tokens", True, "an integer"),  # YAML `true` is no number
        ("max_new_tokens", 2.5, "an integer"),
        ("temperature", "warm", "a number"),
        ("temperature", False, "a number"),
        ("model", None, "a string"),
        ("prompts", "just one", "a list"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_field(field_name, value, expected):
    data = {"kind": "generate", "prompts": ["hi"], field_name: value}
    with pytest.raises(InvalidInput) as wrong:
        recipe_from_dict(data, where="recipe.yaml")
    assert wrong.value.where == f"recipe.yaml: field {field_name!r}"
    assert expected in wrong.value.what and repr(value) in wrong.value.what


def test_a_bad_list_item_is_named_by_its_index():
    with pytest.raises(InvalidInput) as wrong:
        recipe_from_dict({"kind": "generate", "prompts": ["fine", 3]})
    assert wrong.value.where.endswith("field 'prompts'[1]")


def test_ints_are_accepted_where_numbers_are_expected():
    recipe = recipe_from_dict({"kind": "generate", "prompts": ["hi"], "temperature": 1, "top_p": 1})
    assert recipe.temperature == 1.0 and isinstance(recipe.temperature, float)
    assert isinstance(recipe.top_p, float)


@pytest.mark.parametrize("data", [{"kind": "trian", "model": "x"}, {"model": "x"}])
def test_an_unknown_or_missing_kind_lists_the_known_kinds(data):
    with pytest.raises(InvalidInput) as unknown:
        recipe_from_dict(data)
    for kind in RECIPES:
        assert kind in unknown.value.fix
    assert "kind" in unknown.value.where


def test_a_recipe_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- kind: generate\n")
    with pytest.raises(InvalidInput, match="must be a mapping") as wrong:
        load_recipe(path)
    assert wrong.value.where == str(path)


def test_invalid_yaml_reports_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("kind: generate\nprompts:\n  - hi\n model: tiny\n", "utf-8")
    with pytest.raises(InvalidInput, match="not valid YAML") as broken:
        load_recipe(path)
    assert broken.value.where.startswith(f"{path}:4:")
    assert broken.value.fix


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(InvalidInput, match="does not exist") as missing:
        load_recipe(path)
    assert missing.value.where == str(path)


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("max_new_tokens", 0),
        ("max_new_tokens", 40000),
        ("temperature", 9.0),
        ("top_p", 0.0),
        ("device", "tpu"),
        ("dtype", "int3"),
        ("prompts", []),
        ("model", "  "),
    ],
)
def test_range_checks_name_the_field(field_name, value):
    data = {"kind": "generate", "prompts": ["hi"], field_name: value}
    with pytest.raises(InvalidInput) as refused:
        recipe_from_dict(data, where="recipe.yaml")
    assert refused.value.where == f"recipe.yaml: recipe field {field_name!r}"
    assert field_name in refused.value.what and refused.value.fix


def test_prepare_model_checks_its_hub():
    with pytest.raises(InvalidInput) as refused:
        PrepareModelRecipe(model="org/name", hub="github")
    assert "'hub'" in refused.value.where and "modelscope" in refused.value.fix
