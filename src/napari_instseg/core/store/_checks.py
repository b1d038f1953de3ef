"""The checks a store runs itself: on every open (state, counts, recorded chunk files, protocol)
and on every read (the checksums of the chunks read; a table row for every labelled id of the
whole image). ``napari-instseg store check`` (:mod:`napari_instseg.core.store._doctor`) checks
everything.

(:class:`AnnotationStore` is :class:`napari_instseg.core.store.AnnotationStore`.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from napari_instseg.core.store._base import CHUNK_PX, StoreError, chunk_crc

if TYPE_CHECKING:
    from napari_instseg.core.store._store import AnnotationStore

__all__ = ["check_on_open", "verify_chunks", "verify_rows_for"]


def check_on_open(store: AnnotationStore) -> None:
    """The checks of opening a store (counts, chunk files, protocol); raises on damage."""
    from napari_instseg.core.store._doctor import quick_problems

    with store._reading():
        store._meta = store._db.meta()  # counts of the same moment as the rows they check
        problems = quick_problems(store)
    if problems:
        listed = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise StoreError(
            f"{store.path} is damaged: {listed}. Run `napari-instseg store check {store.path}` for details and "
            f"`napari-instseg store repair {store.path}` to recover what can be recovered (a backup is kept)."
        )


def verify_chunks(store: AnnotationStore, region: tuple[int, int, int, int]) -> None:
    """Raise when a label chunk of ``region`` is missing or its checksum differs."""
    cy0, cx0 = region[0] // store._chunk_yx()[0], region[1] // store._chunk_yx()[1]
    cy1, cx1 = (region[2] - 1) // store._chunk_yx()[0], (region[3] - 1) // store._chunk_yx()[1]
    cursor = store._db.conn.execute(
        "SELECT cy, cx, crc FROM chunks WHERE cy BETWEEN ? AND ? AND cx BETWEEN ? AND ?", (cy0, cy1, cx0, cx1)
    )
    for cy, cx, crc in cursor.fetchall():
        found = chunk_crc(store._labels, store.path, cy, cx)
        if found != crc:
            what = "missing" if found is None else "damaged (checksum differs)"
            raise StoreError(
                f"{store.path}: label chunk ({cy}, {cx}) (pixels y {cy * CHUNK_PX}.., x {cx * CHUNK_PX}..) is "
                f"{what}; it is not read as background. Run `napari-instseg store repair {store.path}`."
            )


def verify_rows_for(store: AnnotationStore, labels: NDArray[np.uint32]) -> None:
    """Raise when an id labelled in ``labels`` has no table row."""
    present = pd.unique(labels.ravel())
    present = present[present > 0]
    if not present.size:
        return
    known = set(store._db.boxes(present.tolist()))
    lost = sorted(int(i) for i in present if int(i) not in known)
    if lost:
        raise StoreError(
            f"{store.path}: {len(lost)} labelled instance(s) have no table row (ids {lost[:10]}); their tags "
            f"would read as defaults. Run `napari-instseg store repair {store.path}`."
        )
