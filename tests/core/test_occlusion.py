"""Front-to-back annotation with amodal outlines: compositing, fractions, tiers, COCO."""

import numpy as np
import pytest

from napari_instseg.core.coco import AnnotatedImage, export_coco, import_coco
from napari_instseg.core.edits import CroppedMask
from napari_instseg.core.occlusion import composite_by_depth, occluded_fractions
from napari_instseg.core.session import AnnotationSession
from napari_instseg.core.synthetic import overlapping_cells


def _disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_front_to_back_amodal_commits_reproduce_known_visible_masks_and_fractions():
    sample = overlapping_cells((160, 160), n_cells=10, seed=4)
    session = AnnotationSession(np.zeros((160, 160), np.uint32), protocol=sample.protocol)
    order = np.argsort(-sample.table["z_order"].to_numpy())  # nearest first: front to back
    id_map = {}
    for k in order:
        result = session.commit(sample.amodal_masks[k], amodal=True, category=int(sample.table["category_id"].iloc[k]))
        id_map[int(sample.table.index[k])] = result.instance_id
    relabelled = np.zeros_like(sample.labels_yx)
    for truth_id, new_id in id_map.items():
        relabelled[sample.labels_yx == truth_id] = new_id
    np.testing.assert_array_equal(session.labels_yx, relabelled)
    for truth_id, new_id in id_map.items():
        expected = sample.table.loc[truth_id, "occluded_fraction"]
        assert session.table.loc[new_id, "occluded_fraction"] == pytest.approx(expected, abs=1e-12)
        assert session.table.loc[new_id, "occlusion"] == sample.table.loc[truth_id, "occlusion"]


def test_two_disks_exact_fraction_and_reorder_recomposites():
    shape = (64, 64)
    a, b = _disk(shape, (32, 24), 12), _disk(shape, (32, 40), 12)
    session = AnnotationSession(np.zeros(shape, np.uint32))
    front = session.commit(a, amodal=True).instance_id
    back = session.commit(b, amodal=True).instance_id
    overlap = (a & b).sum()
    assert session.table.loc[front, "occluded_fraction"] == 0.0
    assert session.table.loc[back, "occluded_fraction"] == pytest.approx(overlap / b.sum())
    assert session.table.loc[back, "occlusion"] == ("partial" if overlap / b.sum() <= 0.35 else "heavy")
    session.bring_forward(back)
    session.bring_forward(back)  # now nearer than 'front'
    assert session.table.loc[front, "occluded_fraction"] == pytest.approx(overlap / a.sum())
    assert (session.labels_yx == back).sum() == b.sum()
    session.undo()
    session.undo()
    assert session.table.loc[front, "occluded_fraction"] == 0.0


@pytest.mark.parametrize("front_outline", [True, False])
def test_one_press_brings_the_back_instance_in_front_and_one_sends_it_back(front_outline):
    """Two amodal commits have z-orders -1 and -2: one bring-forward already moves the back one
    strictly in front (it owns the overlap, fractions follow), one send-backward puts it
    back; each is one undo step. Also in front of an instance without an outline."""
    shape = (64, 64)
    a, b = _disk(shape, (32, 24), 12), _disk(shape, (32, 40), 12)
    session = AnnotationSession(np.zeros(shape, np.uint32))
    front = session.commit(a, amodal=front_outline, in_front=not front_outline).instance_id
    back = session.commit(b, amodal=True).instance_id
    assert (session.labels_yx[a & b] == front).all()
    assert session.table.loc[back, "occluded_fraction"] == pytest.approx((a & b).sum() / b.sum())
    before, steps = session.labels_yx.copy(), len(session.undo_stack)
    session.bring_forward(back)
    assert session.table.loc[back, "z_order"] > session.table.loc[front, "z_order"]
    assert (session.labels_yx[a & b] == back).all() and len(session.undo_stack) == steps + 1
    assert session.table.loc[back, "occluded_fraction"] == 0.0
    if front_outline:
        assert session.table.loc[front, "occluded_fraction"] == pytest.approx((a & b).sum() / a.sum())
        session.send_backward(back)
        assert session.table.loc[back, "z_order"] < session.table.loc[front, "z_order"]
        np.testing.assert_array_equal(session.labels_yx, before)
        session.undo()
    session.undo()
    np.testing.assert_array_equal(session.labels_yx, before)
    assert len(session.undo_stack) == steps


def test_bring_forward_passes_only_the_next_instance_in_the_way():
    """Three outlines in a row, front to back: one press puts the last one in front of the
    middle one (the instance in its way), one press sends the first behind the middle one."""
    shape = (64, 80)
    masks = [_disk(shape, (32, x), 10) for x in (16, 30, 44)]
    session = AnnotationSession(np.zeros(shape, np.uint32))
    first, middle, last = (session.commit(m, amodal=True).instance_id for m in masks)  # z -1, -2, -3
    session.bring_forward(last)
    assert (session.labels_yx[masks[1] & masks[2]] == last).all()
    assert session.table.loc[middle, "z_order"] < session.table.loc[last, "z_order"]
    session.send_backward(first)
    assert (session.labels_yx[masks[0] & masks[1]] == middle).all()
    assert session.table.loc[first, "z_order"] < session.table.loc[middle, "z_order"]


def test_manual_tier_overrides_the_derived_one():
    shape = (64, 64)
    session = AnnotationSession(np.zeros(shape, np.uint32))
    front = session.commit(_disk(shape, (32, 24), 12), amodal=True).instance_id
    back = session.commit(_disk(shape, (32, 40), 12), amodal=True).instance_id
    session.retag(back, occlusion="heavy")
    session.set_amodal(front, _disk(shape, (32, 20), 6))  # front shrinks: back is less hidden
    assert session.table.loc[back, "occlusion"] == "heavy" and session.table.loc[back, "occlusion_manual"]
    assert session.table.loc[back, "occluded_fraction"] == 0.0


def test_composite_and_fractions_helpers_agree_with_the_session():
    shape = (40, 40)
    masks = np.stack([_disk(shape, (20, 15), 9), _disk(shape, (20, 25), 9)])
    labels = composite_by_depth(masks, [1, 2], [0, 5])
    fractions = occluded_fractions(labels, masks, [1, 2])
    assert fractions[1] == 0.0 and 0 < fractions[0] < 1


def test_coco_carries_amodal_fields_losslessly():
    shape = (64, 64)
    session = AnnotationSession(np.zeros(shape, np.uint32))
    session.commit(_disk(shape, (32, 24), 12), amodal=True)
    session.commit(_disk(shape, (32, 40), 12), amodal=True)
    coco = export_coco([AnnotatedImage(session.labels_yx, session.table, "a.png", amodal=session.amodal)]).coco
    back = next(a for a in coco["annotations"] if a["instance_id"] == 2)
    assert back["amodal_area"] == _disk(shape, (32, 40), 12).sum() > back["area"]
    assert back["occluded_fraction"] == pytest.approx(1 - back["area"] / back["amodal_area"])
    item = import_coco(coco).images[0]
    np.testing.assert_array_equal(item.labels_yx, session.labels_yx)
    for instance_id, outline in session.amodal.items():
        assert isinstance(item.amodal[instance_id], CroppedMask)
        np.testing.assert_array_equal(item.amodal[instance_id].full(shape), outline.full(shape))
