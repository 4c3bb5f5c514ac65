"""What the Agent page computes: searchable documents from uploads, the memory handed to the
next turn, and the equivalent command line."""

from __future__ import annotations

import pytest

from workbench.agent.loop import AgentEvent
from workbench.agent.view import AgentTurn, cli_command, document_index, memory, page_tools
from workbench.errors import InvalidInput


def test_uploaded_documents_join_the_bundled_ones_and_are_searched():
    index = document_index([("pets.md", b"Our office cat is called Biscuit.")])
    assert {p.source for p in index.passages} >= {"pets.md", "lab_handbook.md"}
    (search,) = page_tools(["search_docs"], index)
    assert "Biscuit" in search.run({"query": "office cat name"}).text


@pytest.mark.parametrize(
    "data, phrase",
    [(b"\xff\xfe\x00binary", "not UTF-8"), (b"x" * (3 * 2**20), "up to 2 MB")],
)
def test_bad_uploads_are_explained(data, phrase):
    with pytest.raises(InvalidInput) as caught:
        document_index([("notes.txt", data)])
    assert phrase in caught.value.what and caught.value.where == "upload notes.txt"


def test_memory_keeps_the_last_answered_turns_in_order():
    turns = [AgentTurn(f"q{i}", answer=f"a{i}") for i in range(6)]
    turns.insert(3, AgentTurn("stopped one", answer=None))
    messages = memory(turns)
    assert [m["content"] for m in messages] == ["q3", "a3", "q4", "a4", "q5", "a5"]
    assert [m["role"] for m in messages[:2]] == ["user", "assistant"]


def test_a_turn_counts_its_steps_and_calls():
    turn = AgentTurn("q", [AgentEvent("action", 1, tool="calculator"), AgentEvent("answer", 2)])
    assert (turn.steps, turn.calls) == (2, 1)


def test_the_command_line_is_quoted_for_a_shell():
    command = cli_command("default", ["calculator", "python"], "react", 3, "What's 2^10?")
    assert command == (
        "workbench agent --model default --tools calculator,python --protocol react "
        "--max-steps 3 'What'\"'\"'s 2^10?' --json"
    )
