"""A model mask a person committed from the candidate they saw is reviewed by them, and QA's
pre-label figures leave it out; batch pre-labels still count (docs/napari.md, review states)."""

import numpy as np

from napari_instseg.core.coco import AnnotatedImage, export_coco
from napari_instseg.core.qa.agreement import prelabel_stats
from napari_instseg.core.session import AnnotationSession


def _square(y, x):
    mask = np.zeros((64, 64), bool)
    mask[y : y + 8, x : x + 8] = True
    return mask


def test_reviewed_commit_is_accepted_by_the_person_and_not_a_prelabel():
    session = AnnotationSession(np.zeros((64, 64), np.uint32), annotator="dr-jones")
    seen = session.commit(_square(4, 4), source="sam2", reviewed=True).instance_id
    batch = session.commit(_square(30, 30), source="sam2").instance_id
    other = session.commit(_square(4, 40), source="sam2").instance_id
    session.accept(batch)
    row = session.table.loc[seen]
    assert row["review"] == "accepted" and row["annotator"] == "dr-jones" and seen not in session.prelabels
    assert session.table.loc[other, "review"] == "pre-label" and other in session.prelabels
    coco = export_coco([AnnotatedImage(session.labels_yx, session.table, "tile.tif")], session.protocol).coco
    stats = prelabel_stats(coco)["overall"]
    assert stats["n_prelabels"] == 2  # batch (accepted) and other (pending), not the one seen
    assert stats["accepted_as_is"] == 1 and stats["acceptance_rate"] == 0.5
    session.undo()
    session.undo()
    session.undo()
    session.undo()
    assert seen not in session.table.index
