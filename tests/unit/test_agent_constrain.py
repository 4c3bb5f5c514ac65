"""Constrained decoding: the grammar keeps every action parseable, first on hand-made token
lists, then inside the real decode loop with a randomly initialised model (which, left alone,
writes gibberish)."""

from __future__ import annotations

import json

import pytest
import torch

from workbench.agent.constrain import (
    Constraint,
    GrammarProcessor,
    advance,
    finished,
    initial,
    json_object,
    json_value,
    may_end,
)
from workbench.agent.protocols import FunctionCalling, InternLM2, ReAct
from workbench.agent.tools import make_tools, tool_from_function
from workbench.generate import GenerationSettings

TOOLS = make_tools(["calculator", "python"])
SCHEMA = {
    "type": "object",
    "properties": {
        "a": {"type": "integer"},
        "b": {"type": "number"},
        "op": {"type": "string", "enum": ["add", "mul"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["a", "op"],
}


def accepts(grammar, text: str) -> bool:
    return advance(initial(grammar), text) is not None


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 12, "op": "add"}',
        '{"op": "mul", "a": -3, "b": 2.5e3}',
        '{"a": 0, "op": "add", "tags": ["x", "y\\"z"]}',
        '{"a": 1, "op": "add", "tags": []}',
    ],
)
def test_schema_objects_that_fit_are_accepted_and_complete(text):
    state = advance(initial(json_object(SCHEMA)), text)
    assert state is not None and finished(state)
    json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 12}',  # closes before the required "op"
        '{"a": 1.5, "op": "add"}',  # a float where an integer belongs
        '{"a": 1, "op": "sub"}',  # not in the enum
        '{"c": 1',  # unknown key
        '{"a": 1, "a": 2',  # a key twice
        '{"a": 01',  # a leading zero
        '{"a": 1, "op": "add"} extra',  # text after the object
    ],
)
def test_schema_objects_that_do_not_fit_are_refused(text):
    assert not accepts(json_object(SCHEMA), text)


def test_react_grammar_allows_a_thought_then_a_tool_or_the_answer():
    grammar = ReAct().grammar(TOOLS)
    action = 'Thought: multiply\nAction: calculator\nAction Input: {"expression": "2*3"}'
    assert finished(advance(initial(grammar), action))
    answer = advance(initial(grammar), "Thought: done\nFinal Answer: 6")
    assert answer is not None and may_end(answer) and not finished(answer)
    assert not accepts(grammar, "Thought: x\nAction: browser")
    assert not accepts(grammar, "Sure! The answer")
    assert not accepts(grammar, 'Thought: x\nAction: calculator\nAction Input: {"code": ')
    assert finished(advance(initial(grammar), "Thought: done\nFinal Answer: 6\nObservation:"))


def test_function_calling_and_internlm2_grammars():
    fc = FunctionCalling().grammar(TOOLS)
    call = '<tool_call>\n{"name": "python", "arguments": {"code": "print(1)"}}\n</tool_call>'
    assert finished(advance(initial(fc), "I will run code.\n" + call))
    assert may_end(advance(initial(fc), "Just an answer."))
    assert not accepts(fc, '<tool_call>\n{"name": "shell"')
    lm = InternLM2().grammar(TOOLS)
    plugin = '<|action_start|><|plugin|>\n{"name": "calculator", "parameters": {"expression": "1"}}'
    assert finished(advance(initial(lm), plugin + "}<|action_end|>"))
    code = "<|action_start|><|interpreter|>\n```python\nprint(2)\n```<|action_end|>"
    assert finished(advance(initial(lm), code))


class WordTokenizer:
    """A tokenizer over a fixed list of strings (id = position); 0 is the end token."""

    def __init__(self, vocab: list[str]) -> None:
        self.vocab = vocab
        self.all_special_ids = [0]

    def __len__(self) -> int:
        return len(self.vocab)

    def convert_ids_to_tokens(self, ids):
        return [self.vocab[i] for i in ids]

    def batch_decode(self, rows):
        return ["".join(self.vocab[i] for i in row) for row in rows]


def test_the_processor_keeps_the_best_token_that_fits_and_then_only_the_end():
    vocab = ["<end>", '{"', 'a": ', "1", "}", "hello", ' "', "2", ', "', 'op": "add"']
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    processor = Constraint(json_value(schema)).processor(WordTokenizer(vocab), [0])
    assert isinstance(processor, GrammarProcessor)
    prefer = torch.tensor([5.0, 1.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0])  # "hello" first
    out = processor([], prefer)
    assert int(out.argmax()) == 1  # '{"' is the best token that fits
    assert torch.isinf(out[5]) and torch.isinf(out[0])  # no gibberish, no early end
    out = processor([1, 2], torch.zeros(10))
    assert set(torch.nonzero(~torch.isinf(out)).flatten().tolist()) == {3, 7}  # digits only
    out = processor([1, 2, 3, 4], torch.randn(10))
    assert torch.nonzero(~torch.isinf(out)).flatten().tolist() == [0]  # done: only the end


def add_numbers(a: int, b: int, mode: str = "sum") -> str:
    """Add two numbers.

    Args:
        a: the first number.
        b: the second number.
        mode: how.
    """
    return str(a + b)


@pytest.mark.parametrize("temperature, seed", [(0.0, 0), (1.0, 1), (1.0, 2), (1.5, 3)])
def test_a_random_model_writes_parseable_calls_under_the_grammar(tiny_artifact, temperature, seed):
    from workbench.engine import open_engine

    tool = tool_from_function(add_numbers)
    tool.parameters["properties"]["mode"] = {"type": "string", "enum": ["sum", "diff"]}
    grammar = FunctionCalling().grammar([tool])[0].markers[0][1]  # the call itself, forced
    engine = open_engine("tiny", slots=1)
    try:
        settings = GenerationSettings(
            max_new_tokens=200,
            temperature=temperature,
            seed=seed,
            constraint=Constraint(grammar),
        )
        stream = engine.chat([{"role": "user", "content": "add 2 and 3"}], settings)
        text = stream.text()
    finally:
        engine.close()
    assert stream.finish_reason == "stop", text  # it ended by itself, on the end token
    reply = FunctionCalling().parse("<tool_call>\n" + text, [tool])
    assert not reply.error, text
    assert tool.run(reply.calls[0].arguments).error is False
