"""Joining the pieces of one nucleus by its blob response (``core.prompting._voting``)."""

from __future__ import annotations

import numpy as np

from napari_instseg.core.prompting._voting import blob_merge, blob_response

RADIUS = 8.0


def _disc(shape_yx, centre_yx, radius):
    yy, xx = np.mgrid[: shape_yx[0], : shape_yx[1]]
    return (yy - centre_yx[0]) ** 2 + (xx - centre_yx[1]) ** 2 <= radius**2


def _scene():
    """Signal and labels: three larger whole nuclei (they set the size of a nucleus so that the
    touching pair is small enough to join: only the blob response keeps it apart), one nucleus
    cut in two halves and two touching nuclei."""
    shape = (64, 160)
    signal = np.zeros(shape)
    labels = np.zeros(shape, dtype=np.uint32)
    next_id = 1
    for centre in ((14, 14), (14, 42), (48, 14)):
        disc = _disc(shape, centre, 1.5 * RADIUS)
        signal[disc] = 1.0
        labels[disc] = next_id
        next_id += 1
    cut = _disc(shape, (40, 60), RADIUS)  # one nucleus, cut down its middle
    signal[cut] = 1.0
    xx = np.arange(shape[1])[None, :]
    labels[cut & (xx < 60)] = 4
    labels[cut & (xx >= 60)] = 5
    for centre, label in (((32, 104), 6), ((32, 119), 7)):  # two touching nuclei
        disc = _disc(shape, centre, RADIUS)
        signal[disc] = 1.0
        labels[disc & (labels == 0)] = label
    return signal, labels


def test_blob_response_peaks_at_the_centre_of_a_nucleus():
    signal, _ = _scene()
    response = blob_response(signal, RADIUS)
    around = response[30:51, 50:71]  # the nucleus at (40, 60)
    assert np.unravel_index(around.argmax(), around.shape) in {(9, 10), (10, 9), (10, 10), (10, 11), (11, 10)}


def test_pieces_of_one_nucleus_are_joined_and_touching_nuclei_are_not():
    signal, labels = _scene()
    before = labels.copy()
    merged = blob_merge(labels, signal, RADIUS)
    np.testing.assert_array_equal(labels, before)  # the input is not modified
    assert merged.dtype == np.uint32
    assert int(merged.max()) == 6
    assert len(np.unique(merged[labels == 4])) == 1
    assert merged[40, 55] == merged[40, 65]  # the two halves are one object again
    assert merged[32, 102] != merged[32, 121]  # the two touching nuclei stay apart
    for y, x in ((14, 14), (14, 42), (48, 14)):
        assert np.count_nonzero(merged == merged[y, x]) == np.count_nonzero(labels == labels[y, x])


def test_nothing_to_join():
    signal, _ = _scene()
    empty = np.zeros(signal.shape, dtype=np.uint32)
    np.testing.assert_array_equal(blob_merge(empty, signal, RADIUS), empty)
    one = (signal > 0).astype(np.uint32)
    np.testing.assert_array_equal(blob_merge(one, signal, RADIUS), one)
