"""The split session: compositing follows the project's one paint order, prompting can run
in a worker without touching the session, and the parts keep their own responsibilities."""

import warnings

import numpy as np
import pytest

from napari_instseg.core.prompting.classic import ClassicPrompter
from napari_instseg.core.session import AnnotationSession


def _disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_equal_depth_outlines_composite_by_paint_order():
    """On equal z_order the smaller outline is in front (occlusion.paint_order), whatever the
    order of commits: a small cell committed after a large region stays visible."""
    session = AnnotationSession(np.zeros((64, 64), np.uint32))
    big = session.commit(_disk((64, 64), (32, 32), 20), amodal=True).instance_id
    small = session.commit(_disk((64, 64), (32, 32), 6), amodal=True).instance_id
    session.set_z_order(big, 0)
    session.set_z_order(small, 0)
    assert session.labels_yx[32, 32] == small  # smaller area in front on a tie
    assert session.table.loc[small, "occluded_fraction"] == 0.0
    assert session.table.loc[big, "occluded_fraction"] > 0.0
    session.set_z_order(big, 1)  # depth still wins over area
    assert session.labels_yx[32, 32] == big


def test_predict_leaves_the_session_unchanged_until_shown():
    image = np.zeros((64, 64), np.uint8)
    image[24:40, 24:40] = 200
    session = AnnotationSession(np.zeros((64, 64), np.uint32), prompter=ClassicPrompter())
    session.set_image(image)
    candidates = session.predict(points_yx=[[32, 32]])  # what a worker thread runs
    assert session.candidates is None and session.candidate is None
    session.show_candidates(candidates)  # what the UI thread runs
    assert session.candidates is candidates and session.candidate is not None
    assert session.commit().instance_id == 1


def test_protocol_old_name_still_imports_with_a_deprecation_warning():
    import napari_instseg.core.protocol as protocol_module

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = protocol_module.Protocol
    assert old is protocol_module.AnnotationProtocol
    assert any(issubclass(w.category, DeprecationWarning) and "AnnotationProtocol" in str(w.message) for w in caught)
    with pytest.raises(AttributeError):
        protocol_module.NoSuchName


def test_undo_redo_through_the_history_restores_ids_and_records():
    session = AnnotationSession(np.zeros((32, 32), np.uint32))
    first = session.commit(_disk((32, 32), (10, 10), 4), source="classic", amodal=True).instance_id
    assert first in session.prelabels and first in session.amodal
    session.undo()
    assert not session.labels_yx.any() and first not in session.prelabels and first not in session.amodal
    session.redo()
    assert (session.labels_yx == first).any() and first in session.prelabels
    session.undo()
    assert session.commit(_disk((32, 32), (10, 10), 4)).instance_id == first + 1  # ids never reused
