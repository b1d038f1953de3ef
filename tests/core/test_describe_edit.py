"""What an undo would undo, named for the user (trial 5, defect 14)."""

from __future__ import annotations

from napari_instseg.core.edits import Edit, describe_edit


def test_describe_edit_names_the_kind_and_at_most_five_ids():
    assert describe_edit(Edit("commit", (7,))) == "commit of 1 instance(s) (7)"
    many = Edit("commit-many", tuple(range(1, 27)))
    assert describe_edit(many) == "commit-many of 26 instance(s) (1, 2, 3, 4, 5, ...)"
    assert describe_edit(many, max_ids=2) == "commit-many of 26 instance(s) (1, 2, ...)"
