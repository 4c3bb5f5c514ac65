"""The workspace: atomic artifacts, safe names, no clobbering, lineage, metrics and deletion."""

from __future__ import annotations

import json

import pytest

from workbench.errors import Conflict, InvalidInput, NotFound
from workbench.workspace import Workspace, validate_name


def make(ws: Workspace, kind: str, name: str, *, parents=(), variant: str = "", text: str = "x"):
    if kind == "model" and not variant:
        variant = "base"
    with ws.create(
        kind,
        name,
        parents=list(parents),
        variant=variant,
        recipe={"kind": "test"},
        metrics={"size_mb": 1},
    ) as staging:
        (staging / "data.txt").write_text(text)
    return ws.get(name)


def leftovers(ws: Workspace) -> list[str]:
    return sorted(p.name for p in (ws.root / ".staging").iterdir())


def test_create_moves_a_complete_artifact_into_place(workspace):
    manifest = make(workspace, "dataset", "alpaca-mini", text="rows")

    path = workspace.path_of("alpaca-mini")
    assert path == workspace.root / "datasets" / "alpaca-mini"
    assert (path / "data.txt").read_text() == "rows"
    assert (manifest.kind, manifest.recipe, manifest.metrics) == (
        "dataset",
        {"kind": "test"},
        {"size_mb": 1},
    )
    assert manifest.created.endswith("+00:00")
    assert [m.name for m in Workspace(workspace.root).list()] == ["alpaca-mini"]  # a fresh object
    assert leftovers(workspace) == []


def test_an_error_inside_create_leaves_nothing_behind(workspace):
    with (
        pytest.raises(RuntimeError, match="disk full"),
        workspace.create("model", "half-written", variant="merged") as staging,
    ):
        (staging / "model.safetensors").write_bytes(b"\0" * 1024)
        raise RuntimeError("disk full")

    assert not workspace.exists("half-written")
    assert not (workspace.root / "models" / "half-written").exists()
    assert leftovers(workspace) == []
    make(workspace, "model", "half-written", variant="merged")  # the name is still free


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x" * 81, "a..b", "-dash", "a b"])
def test_unsafe_names_are_refused(workspace, name):
    with pytest.raises(InvalidInput) as refused, workspace.create("dataset", name):
        pytest.fail("the block must not run for a refused name")
    assert "artifact name" in refused.value.where and refused.value.fix
    assert sorted(p.name for p in workspace.root.parent.iterdir()) == ["workspace"]
    assert workspace.path_of(name) is None


def test_a_name_with_a_trailing_newline_is_refused():
    with pytest.raises(InvalidInput):
        validate_name("abc\n")


def test_longest_allowed_name_and_bad_kinds_or_variants(workspace):
    assert make(workspace, "eval", "e" * 80).name == "e" * 80
    with (
        pytest.raises(InvalidInput, match="Unknown artifact kind"),
        workspace.create("checkpoint", "c"),
    ):
        pass
    with pytest.raises(InvalidInput, match="needs a variant"), workspace.create("model", "m"):
        pass


def test_an_existing_artifact_is_never_clobbered(workspace):
    make(workspace, "model", "smollm2", text="first")

    ran = False
    with (
        pytest.raises(Conflict) as taken,
        workspace.create("model", "smollm2", variant="merged") as staging,
    ):
        ran = True
        (staging / "data.txt").write_text("second")
    assert not ran and "smollm2" in taken.value.what and taken.value.fix
    with (
        pytest.raises(Conflict),
        workspace.create("adapter", "smollm2"),
    ):  # names are unique across kinds
        pass
    assert (workspace.path_of("smollm2") / "data.txt").read_text() == "first"
    assert workspace.get("smollm2").variant == "base"
    assert leftovers(workspace) == []


def test_lineage_children_and_graph_across_three_generations(workspace):
    make(workspace, "model", "base")
    make(workspace, "dataset", "chats")
    make(workspace, "adapter", "lora", parents=["base", "chats"])
    make(workspace, "model", "merged", parents=["lora"], variant="merged")
    make(workspace, "model", "merged-int4", parents=["merged"], variant="quantized")

    chain = workspace.lineage("merged-int4")
    assert [m.name for m in chain] == ["base", "chats", "lora", "merged", "merged-int4"]
    assert [m.name for m in workspace.children("base")] == ["lora"]
    assert [m.name for m in workspace.children("merged-int4")] == []
    nodes, edges = workspace.graph()
    assert {m.name for m in nodes} == {"base", "chats", "lora", "merged", "merged-int4"}
    assert sorted(edges) == [
        ("base", "lora"),
        ("chats", "lora"),
        ("lora", "merged"),
        ("merged", "merged-int4"),
    ]

    workspace.delete("lora", force=True)  # keeps its child, whose lineage now has a hole
    chain = workspace.lineage("merged-int4")
    assert [(m.name, m.kind) for m in chain] == [
        ("lora", "missing"),
        ("merged", "model"),
        ("merged-int4", "model"),
    ]


def test_update_metrics_merges_and_persists(workspace):
    make(workspace, "model", "m")
    workspace.update_metrics("m", {"perplexity": 12.5})
    workspace.update_metrics("m", {"perplexity": 11.0, "accuracy": 0.4})

    assert Workspace(workspace.root).get("m").metrics == {
        "size_mb": 1,
        "perplexity": 11.0,
        "accuracy": 0.4,
    }
    with pytest.raises(NotFound):
        workspace.update_metrics("nope", {"a": 1})


def test_delete_refuses_a_parent_with_children_unless_forced(workspace):
    make(workspace, "model", "base")
    make(workspace, "adapter", "lora", parents=["base"])

    with pytest.raises(Conflict) as refused:
        workspace.delete("base")
    assert "lora" in refused.value.what and "force" in refused.value.fix
    assert workspace.exists("base")

    workspace.delete("lora")
    workspace.delete("base")
    assert workspace.list() == [] and leftovers(workspace) == []
    with pytest.raises(NotFound) as missing:
        workspace.delete("base")
    assert "workbench models list" in missing.value.fix


def test_a_corrupt_manifest_is_reported_and_skipped_by_list(workspace):
    make(workspace, "model", "good")
    make(workspace, "dataset", "broken")
    manifest = workspace.path_of("broken") / "manifest.json"
    manifest.write_text('{"name": "broken", "kind": ')

    with pytest.raises(InvalidInput) as unreadable:
        workspace.get("broken")
    assert unreadable.value.where == str(manifest) and unreadable.value.fix
    assert [m.name for m in workspace.list()] == ["good"]


def test_a_manifest_that_is_not_an_object_is_reported_and_skipped(workspace):
    make(workspace, "model", "good")
    make(workspace, "dataset", "listy")
    (workspace.path_of("listy") / "manifest.json").write_text(json.dumps([1, 2]))
    assert [m.name for m in workspace.list()] == ["good"]
    with pytest.raises(InvalidInput):
        workspace.get("listy")
