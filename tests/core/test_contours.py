"""Bright-field outlines redrawn at each object's own level (``_contours.redraw_outlines``), on
small synthetic images: an outline grows over a pale rim its first object missed, but does not
carve a pale part of the nucleus that reaches its edge, and never enters a neighbour."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_instseg.core.prompting._contours import redraw_outlines

RADIUS_PX = 10.0


def _disc(shape_yx, centre_yx, radius_px):
    yy, xx = np.mgrid[: shape_yx[0], : shape_yx[1]]
    return (yy - centre_yx[0]) ** 2 + (xx - centre_yx[1]) ** 2 <= radius_px**2


def test_outline_grows_over_a_pale_rim():
    nucleus = _disc((60, 60), (30, 30), 10)
    signal = np.where(nucleus, 0.5, 0.0)  # a pale rim 2 px wide ...
    signal[_disc((60, 60), (30, 30), 8)] = 1.0  # ... around a dark core, the first object
    first = _disc((60, 60), (30, 30), 8).astype(np.uint32)
    redrawn = redraw_outlines(first, signal, RADIUS_PX, 0.05)
    assert redrawn.max() == 1
    assert np.array_equal(redrawn > 0, nucleus)


def test_pale_part_reaching_the_edge_is_not_carved():
    nucleus = _disc((60, 60), (30, 30), 10)
    signal = np.where(nucleus, 1.0, 0.0)
    pale = nucleus & (np.mgrid[:60, :60][1] >= 33)  # pale nucleoplasm up to the outline
    signal[pale] = 0.1
    first = nucleus.astype(np.uint32)
    redrawn = redraw_outlines(first, signal, RADIUS_PX, 0.05)
    deep = ndimage.distance_transform_edt(nucleus) > 0.1 * RADIUS_PX
    assert (redrawn[deep] == 1).all()  # only the outermost pixel may go
    assert (redrawn > 0).sum() >= 0.9 * nucleus.sum()


def test_touching_objects_keep_their_own_pixels():
    left, right = _disc((60, 80), (30, 30), 10), _disc((60, 80), (30, 48), 10)
    signal = np.where(left | right, 1.0, 0.0)
    first = np.zeros((60, 80), np.uint32)
    first[left] = 1
    first[right & ~left] = 2
    redrawn = redraw_outlines(first, signal, RADIUS_PX, 0.05)
    assert set(np.unique(redrawn)) == {0, 1, 2}
    assert np.array_equal(redrawn == 1, first == 1) and np.array_equal(redrawn == 2, first == 2)


def test_nothing_to_redraw():
    empty = np.zeros((20, 20), np.uint32)
    assert redraw_outlines(empty, np.zeros((20, 20)), RADIUS_PX, 0.05).max() == 0
