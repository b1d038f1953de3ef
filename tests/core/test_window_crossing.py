"""A pre-label crossing a slide window's edge, reviewed in a window session.

Every decision (accept, edit then finish, reject, delete), its undo and its redo must leave
the store exactly as the same decision taken in a session over the whole image: the saved
proposal (the full mask the model proposed, with its score), the object's pixels outside the
window, its row (``review``, ``prelabel_iou``, ``source``), QA's pre-label figures and the
COCO export.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_instseg import cli
from napari_instseg.core.instances import make_rows
from napari_instseg.core.qa import prelabel_stats
from napari_instseg.core.store import AnnotationStore

SHAPE = (600, 900)
WINDOW = (50, 100, 350, 400)  # the object crosses its right edge (x = 400)
INSIDE = (50, 300, 350, 600)  # a window shifted so that the object lies wholly inside
OBJECT = (100, 360, 160, 440)  # 60 x 80 px: 40 columns inside WINDOW, 40 outside
SCORE = 0.77
ROW_COLUMNS = ["review", "prelabel_iou", "source", "category_id", "z_order", "iscrowd"]


def _rect(shape, y0, x0, y1, x1):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _make_store(path):
    """A store with one model pre-label crossing WINDOW's edge (proposal and score saved) and
    one manual instance wholly inside it."""
    with AnnotationStore.create(path, SHAPE, image={"file_name": "slide.tif"}) as store:
        session = store.session()
        session.commit_many([_rect(SHAPE, *OBJECT)], scores=[SCORE], source="sam2")
        session.commit(_rect(SHAPE, 200, 150, 230, 190))
    return path


def _edit(session, origin_yx):
    """Erase the object's 20 columns nearest the window's edge and paint 10 rows under it
    (inside the window only), then finish (accept)."""
    oy, ox = origin_yx
    labels = session.labels_yx
    labels[100 - oy : 160 - oy, 380 - ox : 400 - ox] = 0  # 1200 px of the proposal erased
    labels[160 - oy : 170 - oy, 360 - ox : 400 - ox] = 1  # 400 px added
    session.labels_edited([1])
    return session.accept(1)


ACTIONS = {
    "accept": (lambda s, origin: s.accept(1), 1),
    "edit": (_edit, 2),
    "reject": (lambda s, origin: s.reject(1), 1),
    "delete": (lambda s, origin: s.delete(1), 1),
}


def _snapshot(path, tmp_path):
    """What the store holds now, as comparable values (timestamps left out)."""
    with AnnotationStore.open(path, read_only=True) as store:
        labels = store.read_labels()  # the whole image: raises when pixels lost their row
        rows = store.table[ROW_COLUMNS].to_dict("index")
        proposals = {
            i: (r.proposal.bbox_yx, r.proposal.mask.tobytes(), r.source, r.score)
            for i, r in store.read_side("prelabel").items()
        }
    out = tmp_path / f"export-{len(list(tmp_path.glob('export-*.json')))}.json"
    assert cli.main(["export", str(path), "-o", str(out)]) == 0
    coco = json.loads(out.read_text())
    exported = {
        a["instance_id"]: (
            a["area"],
            a["bbox"],
            a.get("score"),
            a["attributes"]["review"],
            _rounded(a["attributes"].get("prelabel_iou")),
        )
        for a in coco["annotations"]
    }
    overall = prelabel_stats(coco)["overall"]
    return {
        "labels": labels,
        "rows": rows,
        "proposals": proposals,
        "coco": exported,
        "qa": {k: v for k, v in overall.items() if v == v},  # NaN left out
    }


def _rounded(value):
    return None if value is None else round(float(value), 9)


def _assert_same(found, expected):
    np.testing.assert_array_equal(found["labels"], expected["labels"])
    assert found["rows"].keys() == expected["rows"].keys()
    for i, row in expected["rows"].items():
        for name, value in row.items():
            if isinstance(value, float) and np.isnan(value):
                assert np.isnan(found["rows"][i][name]), (i, name)
            else:
                assert found["rows"][i][name] == pytest.approx(value), (i, name)
    assert found["proposals"] == expected["proposals"]
    assert found["coco"] == expected["coco"]
    assert found["qa"] == pytest.approx(expected["qa"])


def _run(tmp_path, name, action, region):
    """Do ``action`` in a session over ``region`` (None: the whole image) on a new store; the
    same, then undo; the same, then undo and redo. Snapshots of the three stores, each closed
    and reopened first."""
    act, n_steps = ACTIONS[action]
    origin = (0, 0) if region is None else region[:2]
    snapshots = []
    for n_undo, n_redo in ((0, 0), (n_steps, 0), (n_steps, n_steps)):
        path = _make_store(tmp_path / f"{name}-{n_undo}-{n_redo}.zarr")
        with AnnotationStore.open(path) as store:
            session = store.session() if region is None else store.window_session(region)
            act(session, origin)
            for _ in range(n_undo):
                session.undo()
            for _ in range(n_redo):
                session.redo()
        snapshots.append(_snapshot(path, tmp_path))
    return snapshots


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_window_decision_on_a_crossing_prelabel_saves_what_a_whole_image_one_does(tmp_path, action):
    whole = _run(tmp_path, "whole", action, None)
    window = _run(tmp_path, "window", action, WINDOW)
    original = _snapshot(_make_store(tmp_path / "original.zarr"), tmp_path)
    for step, found, expected in zip(("done", "undone", "redone"), window, whole, strict=True):
        try:
            _assert_same(found, expected)
        except AssertionError as exc:
            raise AssertionError(f"{action}, {step}: {exc}") from exc
    _assert_same(window[1], original)  # undo gives back exactly the store before


def _done_in_window(tmp_path, action):
    path = _make_store(tmp_path / f"{action}.zarr")
    with AnnotationStore.open(path) as store:
        ACTIONS[action][0](store.window_session(WINDOW), WINDOW[:2])
    return path


def test_accepting_an_unchanged_crossing_prelabel_gives_iou_1_and_keeps_the_proposal(tmp_path):
    path = _done_in_window(tmp_path, "accept")
    with AnnotationStore.open(path) as store:
        row = store.table.loc[1]
        assert row["review"] == "accepted" and row["prelabel_iou"] == 1.0 and row["source"] == "sam2"
        record = store.read_side("prelabel")[1]
        assert record.proposal.bbox_yx == OBJECT and record.proposal.mask.all() and record.score == SCORE
        assert (store.read_labels(OBJECT) == 1).all()  # the part outside the window too


def test_editing_a_crossing_prelabel_measures_iou_on_the_whole_object(tmp_path):
    path = _done_in_window(tmp_path, "edit")
    with AnnotationStore.open(path) as store:
        row = store.table.loc[1]
        # proposal 4800 px; now 4800 - 1200 + 400 px; both 3600: IoU 3600 / 5200 (not 0.5,
        # the figure of the window part alone)
        assert row["review"] == "corrected" and row["prelabel_iou"] == pytest.approx(3600 / 5200)
        assert store.read_side("prelabel")[1].proposal.area_px == 4800
        outside = store.read_labels((100, 400, 160, 440))
        assert (outside == 1).all()  # never touched by the window
        # the object, wholly inside a shifted window: the full proposal comes along and
        # reviewing it there gives the same figure
        inside = store.window_session(INSIDE)
        oy, ox = INSIDE[:2]
        np.testing.assert_array_equal(
            inside.prelabels[1].full(inside.shape_yx), _rect(inside.shape_yx, 100 - oy, 360 - ox, 160 - oy, 440 - ox)
        )
        assert inside.accept(1) == "corrected"
        assert inside.table.loc[1, "prelabel_iou"] == pytest.approx(3600 / 5200)


@pytest.mark.parametrize("action", ["reject", "delete"])
def test_rejecting_or_deleting_a_crossing_object_clears_it_beyond_the_window(tmp_path, action):
    path = _done_in_window(tmp_path, action)
    with AnnotationStore.open(path) as store:
        assert not (store.read_labels() == 1).any()
        assert (store.read_labels((200, 150, 230, 190)) == 2).all()  # its neighbour untouched
        assert (store.table.loc[1, "review"] == "rejected") if action == "reject" else 1 not in store.table.index
        assert (1 in store.read_side("prelabel")) == (action == "reject")
        store.session()  # the whole store opens (no pixels without a row)


def test_deleting_a_crossing_object_then_undoing_restores_its_full_proposal_and_outline(tmp_path):
    path = tmp_path / "amodal.zarr"
    with AnnotationStore.create(path, SHAPE) as store:
        session = store.session()
        session.commit_many([_rect(SHAPE, *OBJECT)], scores=[SCORE], source="sam2")
        session.set_amodal(1, _rect(SHAPE, 90, 350, 170, 450))
        outline = store.read_side("amodal")[1]
        window = store.window_session(WINDOW)
        window.delete(1)
        assert 1 not in store.read_side("amodal") and not (store.read_labels() == 1).any()
        window.undo()
        record = store.read_side("prelabel")[1]
        assert record.proposal.bbox_yx == OBJECT and record.score == SCORE
        restored = store.read_side("amodal")[1]
        assert restored.bbox_yx == outline.bbox_yx and (restored.mask == outline.mask).all()
        assert (store.read_labels(OBJECT) == 1).all()
        window.redo()
        assert not (store.read_labels() == 1).any() and 1 not in store.table.index
        window.undo()
        # an outline drawn in the window replaces the full one; its undo gives the full one back
        oy, ox = WINDOW[:2]
        window.set_amodal(1, _rect(window.shape_yx, 90 - oy, 350 - ox, 170 - oy, 400 - ox))
        assert store.read_side("amodal")[1].bbox_yx == (90, 350, 170, 400)
        window.undo()
        restored = store.read_side("amodal")[1]
        assert restored.bbox_yx == outline.bbox_yx and (restored.mask == outline.mask).all()


def test_a_crossing_prelabel_without_a_saved_proposal_is_measured_whole(tmp_path):
    """A pre-label written without its proposal (a bulk-built slide store): its proposal is
    the object as it was when the window opened, the part outside the window included."""
    path = tmp_path / "bulk.zarr"
    labels = np.zeros(SHAPE, np.uint32)
    labels[100:160, 360:440] = 1
    with AnnotationStore.create(path, SHAPE) as store:
        store.bulk_write((0, 0), labels, make_rows([1], source="sam2", review="pre-label"))
    with AnnotationStore.open(path) as store:
        assert not store.read_side("prelabel")
        window = store.window_session(WINDOW)
        assert window.accept(1) == "accepted" and window.table.loc[1, "prelabel_iou"] == 1.0
        window.undo()
        _edit(window, WINDOW[:2])
        assert window.table.loc[1, "review"] == "corrected"
        assert window.table.loc[1, "prelabel_iou"] == pytest.approx(3600 / 5200)
        assert not store.read_side("prelabel")  # nothing derived is saved as if a model proposed it
        # accepted again in another window visit: still corrected (not "accepted as is")
        again = store.window_session(INSIDE)
        assert again.accept(1) == "corrected"
        assert again.table.loc[1, "prelabel_iou"] == pytest.approx(3600 / 5200)
