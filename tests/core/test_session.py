"""The session's commit and review rules, headless."""

import numpy as np
import pytest

from napari_instseg.core.protocol import AnnotationProtocol, Category
from napari_instseg.core.session import AnnotationSession, CommitError


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


@pytest.fixture
def session():
    protocol = AnnotationProtocol(categories=(Category(1, "nucleus"), Category(2, "mitosis")))
    return AnnotationSession(np.zeros((64, 64), np.uint32), protocol=protocol, annotator="ann", clock=FakeClock())


def test_commit_gives_new_ids_and_never_overwrites(session):
    first = session.commit(_disk((64, 64), (20, 20), 8), category="mitosis")
    second = session.commit(_disk((64, 64), (20, 28), 8))
    assert (first.instance_id, second.instance_id) == (1, 2)
    assert second.skipped_px > 0 and second.painted_px + second.skipped_px == _disk((64, 64), (20, 28), 8).sum()
    assert np.count_nonzero(session.labels_yx == 1) == first.painted_px  # untouched
    assert session.table.loc[1, "category_id"] == 2 and session.table.loc[2, "source"] == "manual"
    assert session.table.loc[2, "review"] == "accepted"
    with pytest.raises(CommitError, match="entirely on committed instances"):
        session.commit(_disk((64, 64), (20, 20), 3))


def test_in_front_covers_and_raises_z_order(session):
    session.commit(_disk((64, 64), (20, 20), 8))
    front = session.commit(_disk((64, 64), (20, 20), 4), in_front=True)
    assert front.z_order == 1 and front.skipped_px == 0
    assert session.labels_yx[20, 20] == front.instance_id
    assert session.commit(_disk((64, 64), (40, 40), 4), in_front=True).z_order == 2


class StubPrompter:
    """Returns fixed candidate masks; stands in for a backend in rule tests (no model output
    is faked in product code)."""

    name = "sam2"

    def __init__(self, masks, scores):
        self.masks, self.scores = masks, scores

    def set_image(self, image, key=None):
        pass

    def predict(self, prompt, *, multimask=True):
        from napari_instseg.core.prompting import Candidates

        return Candidates.sorted(np.stack(self.masks), self.scores, self.name)


def test_prelabel_review_accept_correct_reject(session):
    shape = (64, 64)
    session.prompter = StubPrompter([_disk(shape, (30, 30), 6), _disk(shape, (30, 30), 9)], [0.3, 0.8])
    candidates = session.prompt(points_yx=[[30, 30]])
    assert candidates.scores.tolist() == pytest.approx([0.8, 0.3])
    assert session.next_candidate() == 1 and session.candidate.sum() == _disk(shape, (30, 30), 6).sum()
    result = session.commit()
    instance = result.instance_id
    assert session.table.loc[instance, "review"] == "pre-label" and session.table.loc[instance, "source"] == "sam2"
    np.testing.assert_array_equal(session.prelabels[instance].full(shape), _disk(shape, (30, 30), 6))
    assert session.accept(instance) == "accepted" and session.table.loc[instance, "prelabel_iou"] == 1.0

    second = session.commit(_disk(shape, (10, 50), 5), source="sam2").instance_id
    session.labels_yx[10, 40:46] = second  # a person paints on it
    session.labels_edited([second])
    assert session.table.loc[second, "review"] == "corrected"
    assert 0.5 < session.table.loc[second, "prelabel_iou"] < 1.0

    third = session.commit(_disk(shape, (50, 12), 5), source="classic").instance_id
    session.reject(third)
    assert not (session.labels_yx == third).any()
    assert session.table.loc[third, "review"] == "rejected"  # still counted
    assert session.commit(_disk(shape, (50, 12), 5)).instance_id == third + 1  # id not reused


def test_active_time_is_booked_per_instance_with_idle_cap(session):
    clock = session._clock
    session.prompter = StubPrompter([_disk((64, 64), (30, 30), 6)], [0.9])
    clock.now += 5
    session.prompt(points_yx=[[30, 30]])
    clock.now += 2
    session.prompt(points_yx=[[30, 30], [31, 31]])
    clock.now += 3
    instance = session.commit().instance_id
    assert session.table.loc[instance, "time_s"] == pytest.approx(5.0)  # from the first prompt
    clock.now += 500  # a coffee break is capped
    session.accept(instance)
    assert session.table.loc[instance, "time_s"] == pytest.approx(65.0)


def test_replace_mask_refines_without_touching_others(session):
    a = session.commit(_disk((64, 64), (20, 20), 6)).instance_id
    b = session.commit(_disk((64, 64), (20, 32), 6)).instance_id
    before_b = session.labels_yx == b
    session.replace_mask(a, _disk((64, 64), (20, 24), 8))
    np.testing.assert_array_equal(session.labels_yx == b, before_b)
    assert session.labels_yx[20, 14] == 0  # old pixel outside the new mask is cleared
    assert session.labels_yx[20, 17] == a and session.labels_yx[20, 31] == b


def test_unknown_ids_and_categories_are_clear_errors(session):
    with pytest.raises(CommitError, match="There is no instance 9"):
        session.accept(9)
    from napari_instseg.core.errors import ProtocolError

    with pytest.raises(ProtocolError, match="Category 'tumour' is not in protocol"):
        session.commit(_disk((64, 64), (20, 20), 3), category="tumour")
    with pytest.raises(CommitError, match="no candidate to commit"):
        session.commit()


def test_existing_labels_get_rows_and_allocation_continues():
    labels = np.zeros((8, 8), np.uint32)
    labels[1:3, 1:3] = 7
    session = AnnotationSession(labels)
    assert session.table.index.tolist() == [7]
    mask = np.zeros((8, 8), bool)
    mask[5:7, 5:7] = True
    assert session.commit(mask).instance_id == 8
    session.labels_yx[0, 7] = 20  # painted with a fresh label outside the session
    session.labels_edited([20])
    assert 20 in session.table.index and session.commit(np.eye(8, dtype=bool)).instance_id == 21


class FailingSink:
    """A sink whose disk is full: nothing can be saved."""

    def record(self, kind, edit):
        raise OSError("No space left on device")


def test_an_action_that_cannot_be_saved_leaves_the_session_unchanged(session):
    session.commit(_disk((64, 64), (20, 20), 5))
    labels, table = session.labels_yx.copy(), session.table.copy()
    session.sink = FailingSink()
    with pytest.raises(OSError, match="No space left"):
        session.commit(_disk((64, 64), (40, 40), 5))
    with pytest.raises(OSError):
        session.undo()
    np.testing.assert_array_equal(session.labels_yx, labels)
    assert session.table.equals(table) and len(session.undo_stack) == 1


def test_commit_many_is_one_undoable_saved_action(session):
    first = session.commit(_disk((64, 64), (10, 10), 4)).instance_id
    masks = [_disk((64, 64), (30, 30), 6), _disk((64, 64), (10, 10), 3), _disk((64, 64), (30, 40), 6)]
    results, covered = session.commit_many(masks, source="classic")
    assert [r.instance_id for r in results] == [first + 1, first + 2] and covered == 1  # the second lies on 'first'
    assert session.undo_stack[-1].op == "commit-many" and len(session.undo_stack) == 2
    assert set(session.prelabels) == {first + 1, first + 2}
    session.undo()
    assert set(np.unique(session.labels_yx)) == {0, first} and set(session.table.index) == {first}
    session.redo()
    assert set(session.table.index) == {first, first + 1, first + 2}
    session.sink = FailingSink()
    labels = session.labels_yx.copy()
    with pytest.raises(OSError):
        session.commit_many([_disk((64, 64), (50, 50), 5)])
    np.testing.assert_array_equal(session.labels_yx, labels)
    assert set(session.table.index) == {first, first + 1, first + 2}


def _prelabels_from_a_file():
    """Two pre-labels of a batch run, exported to COCO and imported back (as napari opens
    ``annotations.json``): the file carries no proposals."""
    from napari_instseg.core.coco import AnnotatedImage, export_coco, import_coco

    shape = (64, 64)
    batch = AnnotationSession(np.zeros(shape, np.uint32))
    for centre in ((20, 20), (40, 44)):
        batch.commit(_disk(shape, centre, 7), source="classic")
    coco = export_coco([AnnotatedImage(batch.labels_yx, batch.table, "tile.png")], batch.protocol).coco
    imported = import_coco(coco)
    image = imported.images[0]
    assert (image.table["review"] == "pre-label").all()
    return image.labels_yx, image.table, imported.protocol


@pytest.mark.parametrize("path", ["file", "store"])
def test_prelabels_read_without_proposals_review_against_the_mask_they_came_with(path, tmp_path):
    """Accept unchanged: ``accepted`` with IoU 1; paint, then accept: ``corrected`` with the
    true IoU, whether the session is made from an imported file or from a store made of it."""
    from napari_instseg.core.store import AnnotationStore

    labels, table, protocol = _prelabels_from_a_file()
    if path == "store":
        AnnotationStore.create(tmp_path / "s.zarr", labels, protocol, table=table).close()
        store = AnnotationStore.open(tmp_path / "s.zarr")
        session = store.session(annotator="me")
    else:
        session = AnnotationSession(labels, table, protocol, annotator="me")
    first, second = sorted(int(i) for i in table.index)
    assert set(session.prelabels) == {first, second}
    assert session.accept(first) == "accepted" and session.table.loc[first, "prelabel_iou"] == 1.0
    before = session.mask_of(second)
    session.labels_yx[40, 51:56] = second  # a person paints on it
    session.labels_edited([second])
    assert session.accept(second) == "corrected"
    expected = before.sum() / (before | (session.labels_yx == second)).sum()
    assert session.table.loc[second, "prelabel_iou"] == pytest.approx(expected) and expected < 1
    session.undo()  # the accept, then the paint: a pre-label again
    session.undo()
    assert session.table.loc[second, "review"] == "pre-label" and session.accept(second) == "accepted"
    if path == "store":
        store.close()


def test_reviewed_rows_of_a_file_get_no_invented_proposal():
    labels, table, protocol = _prelabels_from_a_file()
    first = int(table.index[0])
    table = table.copy()
    table.loc[first, "review"] = "accepted"
    session = AnnotationSession(labels, table, protocol)
    assert first not in session.prelabels and len(session.prelabels) == 1
