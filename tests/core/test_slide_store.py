"""Working windows on a slide-sized label store: round trips, seams, touched chunks only."""

import os

import numpy as np
import pytest

from napari_instseg.core.slide import window_at
from napari_instseg.core.store import AnnotationStore

SIDE = 20_000


def _rect(shape, y0, x0, y1, x1):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _chunk_mtimes(path):
    root = path / "labels"
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and p.name != "zarr.json"
    }


@pytest.fixture
def slide_store(tmp_path):
    with AnnotationStore.create(tmp_path / "slide.zarr", (SIDE, SIDE), image={"file_name": "slide.ome.zarr"}) as store:
        yield store, tmp_path / "slide.zarr"


def test_window_edits_land_in_the_slide_and_touch_only_their_chunks(slide_store):
    store, path = slide_store
    window = window_at((SIDE, SIDE), (10_300, 5_300), tile_px=1024, halo_px=64)
    assert window.region_yx == (10240 - 64, 5120 - 64, 11264 + 64, 6144 + 64)
    session = store.window_session(window.region_yx)
    before = _chunk_mtimes(path)
    first = session.commit(_rect(window.shape_yx, 100, 100, 140, 160)).instance_id
    y0, x0 = window.origin_yx
    assert (store.read_labels((y0 + 100, x0 + 100, y0 + 140, x0 + 160)) == first).all()
    written = {k for k, v in _chunk_mtimes(path).items() if before.get(k) != v}
    # the rectangle's slide pixels lie in exactly these 256-px chunks
    expected = {
        f"c/{cy}/{cx}"
        for cy in range((y0 + 100) // 256, (y0 + 139) // 256 + 1)
        for cx in range((x0 + 100) // 256, (x0 + 159) // 256 + 1)
    }
    assert written == expected
    assert not store.read_labels((0, 0, 2000, 2000)).any()  # everything else untouched


def test_a_seam_crossing_object_keeps_one_id_and_ids_stay_unique(slide_store):
    store, _ = slide_store
    left = window_at((SIDE, SIDE), (500, 500), 1024, 64)
    right = window_at((SIDE, SIDE), (500, 1500), 1024, 64)
    session = store.window_session(left.region_yx)
    # an object across the seam at x = 1024: drawn in the left window (its halo reaches x = 1088)
    shape = left.shape_yx
    instance = session.commit(_rect(shape, 200, 1000, 260, 1080)).instance_id
    other = store.window_session(right.region_yx)
    assert instance in np.unique(other.labels_yx)  # the halo shows it in the next window
    ox = right.origin_yx[1]
    other.labels_yx[200:260, 1080 - ox : 1120 - ox] = instance  # the annotator extends it there
    other.labels_edited([instance])
    extended = store.read_labels((200, 1000, 260, 1120))
    assert (extended == instance).all()
    new = other.commit(_rect(other.shape_yx, 500, 500, 520, 520)).instance_id
    assert new == instance + 1  # ids allocated across the slide


def test_window_undo_and_reopen(slide_store):
    store, path = slide_store
    window = window_at((SIDE, SIDE), (19_990, 19_990), 1024, 64)  # the last, clipped tile
    session = store.window_session(window.region_yx)
    instance = session.commit(_rect(window.shape_yx, 10, 10, 50, 50), source="sam2").instance_id
    session.retag(instance, occlusion="partial")
    session.undo()
    store.close()
    with AnnotationStore.open(path) as again:
        y0, x0 = window.origin_yx
        assert (again.read_labels((y0 + 10, x0 + 10, y0 + 50, x0 + 50)) == instance).all()
        assert again.table.loc[instance, "occlusion"] == "none"
        reopened = again.window_session(window.region_yx)
        assert instance in reopened.prelabels  # the proposal, back in window coordinates
        np.testing.assert_array_equal(
            reopened.prelabels[instance].full(window.shape_yx), _rect(window.shape_yx, 10, 10, 50, 50)
        )
    assert os.path.getsize(path / "instseg" / "store.sqlite") > 0


def test_a_window_session_reads_only_the_rows_touching_its_region(slide_store):
    store, _ = slide_store
    far = store.window_session((0, 0, 512, 512))
    far_id = far.commit(_rect((512, 512), 10, 10, 20, 20)).instance_id
    near_region = (15_000, 15_000, 16_024, 16_024)
    near = store.window_session(near_region)
    near_id = near.commit(_rect(near.shape_yx, 100, 100, 120, 130), source="sam2").instance_id
    again = store.window_session(near_region)
    assert again.table.index.tolist() == [near_id]  # the R-tree query leaves the far row on disk
    assert list(again.prelabels) == [near_id]
    assert store.n_instances == 2 and far_id in store.table.index
