"""Claiming a work item: finished work is never taken back silently (trial 5, defect 5)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.project import Project, ProjectError, refs_from_patterns


@pytest.mark.parametrize("finish", ["submitted", "reviewed"])
def test_a_finished_item_is_not_claimed_even_by_its_annotator(tmp_path, finish):
    import tifffile

    folder = tmp_path / "tiles"
    folder.mkdir()
    tifffile.imwrite(folder / "tile_0.tif", np.zeros((32, 32), np.uint8))
    with Project.create(tmp_path / "proj", refs_from_patterns([str(folder / "*.tif")])) as project:
        item = project.manifest.claim((1, ""), "alice")
        project.open_store(item).close()
        item = project.submit(item, "alice", n_instances=0)
        if finish == "reviewed":
            item = project.review(item)
        before = project.manifest.item(1)
        with pytest.raises(ProjectError, match=rf"tile_0.tif\) is {finish}: .* turn on review mode"):
            project.manifest.claim((1, ""), "alice")
        assert project.manifest.item(1) == before  # status, assignee, times unchanged
