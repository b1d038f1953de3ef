"""The one-pass RLE against pycocotools, the reference implementation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from napari_instseg.core import rle


def _reference_rle(labels, instance_id):
    encoded = mask_utils.encode(np.asfortranarray(labels == instance_id, dtype=np.uint8))
    return encoded["counts"].decode("ascii")


label_images = arrays(
    np.uint32,
    st.tuples(st.integers(1, 24), st.integers(1, 24)),
    elements=st.integers(0, 4),
)


@settings(max_examples=150, deadline=None)
@given(labels=label_images)
def test_instance_rles_equal_pycocotools(labels):
    runs = rle.label_runs(labels)
    present = np.unique(labels)
    assert runs.ids.tolist() == present[present > 0].tolist()
    for instance_id, encoded, area in zip(runs.ids, rle.instance_rles(runs), runs.area_px, strict=False):
        assert encoded["size"] == list(labels.shape)
        assert encoded["counts"] == _reference_rle(labels, instance_id)
        assert area == np.count_nonzero(labels == instance_id)


@settings(max_examples=150, deadline=None)
@given(mask=arrays(np.bool_, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_decoding_and_painting_reproduce_the_mask(mask):
    encoded = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    counts = rle.counts_from_string(encoded["counts"])
    assert counts.sum() == mask.size
    starts, lengths = rle.runs_from_counts(counts)
    height, width = mask.shape
    flat_xy = np.zeros(width * height, np.uint32)
    taken = rle.paint_runs(flat_xy, starts, lengths, 7)
    assert taken.size == 0
    np.testing.assert_array_equal(flat_xy.reshape(width, height).T == 7, mask)


def test_large_counts_use_several_groups_and_negative_deltas():
    # long runs followed by short ones give multi-group values and negative deltas
    mask = np.zeros((3000, 7), np.uint8)
    mask[5:2990, 0] = 1
    mask[10:12, 3] = 1
    mask[:, 6] = 1
    encoded = mask_utils.encode(np.asfortranarray(mask))
    counts = rle.counts_from_string(encoded["counts"])
    starts, lengths = rle.runs_from_counts(counts)
    flat_xy = np.zeros(mask.size, np.uint32)
    rle.paint_runs(flat_xy, starts, lengths, 1)
    np.testing.assert_array_equal(flat_xy.reshape(7, 3000).T, mask)


def test_painting_never_overwrites_and_reports_contested_pixels():
    flat_xy = np.zeros(10, np.uint32)
    rle.paint_runs(flat_xy, np.array([2]), np.array([4]), 1)
    taken = rle.paint_runs(flat_xy, np.array([0, 5]), np.array([3, 3]), 2)
    assert flat_xy.tolist() == [2, 2, 1, 1, 1, 1, 2, 2, 0, 0]
    assert sorted(taken.tolist()) == [2, 5]


@pytest.mark.parametrize("bad", ["12\x7f", "1P"])
def test_corrupt_strings_are_refused(bad):
    with pytest.raises(ValueError, match="RLE counts string"):
        rle.counts_from_string(bad)
