"""Chats and arena votes in the workspace: saved and listed, exported, votes checked, read back
in the documented shape, and tallied; the deploy page's snippets; the Gradio demo's messages."""

from __future__ import annotations

import json

import pytest

from workbench.chat_store import (
    arena_table,
    delete_chat,
    export_chat,
    list_chats,
    load_chat,
    new_chat,
    read_votes,
    record_vote,
    save_chat,
)
from workbench.chat_view import settings_from, snippets
from workbench.demo import demo_messages
from workbench.errors import InvalidInput, NotFound


def test_a_chat_is_saved_listed_and_exported(workspace):
    chat = new_chat(workspace, "default", system="Be brief.", settings={"max_new_tokens": 64})
    chat.messages += [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris.", "stats": {"tokens": 2}},
    ]
    save_chat(workspace, chat)
    other = new_chat(workspace, "tiny")
    assert [c.id for c in list_chats(workspace)] == [other.id, chat.id]  # newest first
    again = load_chat(workspace, chat.id)
    assert again.title == "What is the capital of France?" and again.messages == chat.messages
    data = json.loads(export_chat(again, "json"))
    assert data["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
    markdown = export_chat(again, "markdown")
    assert "**System:**\n\nBe brief." in markdown and "**Assistant:**\n\nParis." in markdown
    with pytest.raises(InvalidInput):
        export_chat(again, "pdf")
    delete_chat(workspace, chat.id)
    with pytest.raises(NotFound):
        load_chat(workspace, chat.id)
    with pytest.raises(InvalidInput):
        load_chat(workspace, "../jobs")


def test_votes_are_checked_stored_and_read_back(workspace):
    assert read_votes(workspace) == []
    record_vote(
        workspace, prompt="Hi", models=["a", "b"], answers=["x", "y"], outcome="win", winner="b"
    )
    record_vote(
        workspace, prompt="Hey", models=["a", "b", "c"], answers=["1", "2", "3"], outcome="tie"
    )
    record_vote(workspace, prompt="Yo", models=["a", "c"], answers=["1", "2"], outcome="skip")
    for bad in (
        {"models": ["a"], "answers": ["x"], "outcome": "tie"},
        {"models": ["a", "b"], "answers": ["x"], "outcome": "tie"},
        {"models": ["a", "b"], "answers": ["x", "y"], "outcome": "win", "winner": "z"},
        {"models": ["a", "b"], "answers": ["x", "y"], "outcome": "tie", "winner": "a"},
        {"models": ["a", "b"], "answers": ["x", "y"], "outcome": "maybe"},
    ):
        with pytest.raises(InvalidInput):
            record_vote(workspace, prompt="p", **bad)
    (workspace.root / "arena" / "votes.jsonl").open("a").write("not json\n")
    votes = read_votes(workspace)
    assert [v["outcome"] for v in votes] == ["win", "tie", "skip"]
    first = votes[0]
    assert {k: first[k] for k in ("prompt", "models", "answers", "winner")} == {
        "prompt": "Hi",
        "models": ["a", "b"],
        "answers": ["x", "y"],
        "winner": "b",
    }
    assert votes[1]["winner"] is None
    table = {row["model"]: row for row in arena_table(votes)}
    assert (table["b"]["wins"], table["b"]["ties"], table["b"]["battles"]) == (1, 1, 2)
    assert (table["a"]["losses"], table["a"]["win_rate"]) == (1, 0.25)
    assert table["c"]["battles"] == 1  # the skip does not count
    assert arena_table(votes)[0]["model"] == "b"


def test_settings_and_snippets_for_the_pages():
    settings = settings_from(128, 0.5, 0.9, 3, "###\n\nUser:")
    assert settings.stop == ["###", "User:"] and settings.max_new_tokens == 128
    with pytest.raises(InvalidInput):
        settings_from(0, 0.5, 0.9, 3, "")
    code = snippets("http://127.0.0.1:8000/v1", "default", "k")
    assert "Authorization: Bearer k" in code["curl"] and '"stream": true' in code["curl"]
    compile(code["python"], "snippet", "exec")  # the Python snippet is valid Python
    assert code["engine"] == "openai:http://127.0.0.1:8000/v1#default"
    assert "Authorization" not in snippets("http://h:1/v1", "m")["curl"]


def test_the_demo_turns_gradio_history_into_messages():
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
    ]
    assert demo_messages("And you?", history, "Be kind.") == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And you?"},
    ]
