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


def _id_pools():
    """Ids that take each path of the grouping: small, above 2**16, sparse up to 2**32 - 1."""
    return st.sampled_from(
        [
            np.array([1, 2, 3, 4], np.uint32),
            np.array([65_534, 65_535, 65_536, 70_001], np.uint32),
            np.array([7, 1 << 20, (1 << 31) + 5, (1 << 32) - 1], np.uint32),
        ]
    )


@settings(max_examples=120, deadline=None)
@given(
    picks=arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 30)), elements=st.integers(0, 4)),
    pool=_id_pools(),
    wide_int=st.booleans(),
)
def test_runs_rles_bboxes_and_areas_equal_pycocotools_for_any_ids(picks, pool, wide_int):
    labels = np.r_[np.uint32(0), pool][picks]
    with pytest.MonkeyPatch.context() as patch:
        if wide_int:  # the int64 path that images of 2**31 pixels or more take
            patch.setattr(rle, "_flat_index_dtype", lambda n: np.int64)
        runs = rle.label_runs(labels)
        rles = rle.instance_rles(runs)
    assert runs.starts.dtype == (np.int64 if wide_int else np.int32)
    present = np.unique(labels)
    assert runs.ids.tolist() == present[present > 0].tolist()
    boxes = rle.bboxes_xywh(runs)
    for k, (instance_id, encoded) in enumerate(zip(runs.ids, rles, strict=True)):
        reference = mask_utils.encode(np.asfortranarray(labels == instance_id, dtype=np.uint8))
        assert encoded == {"size": list(labels.shape), "counts": reference["counts"].decode("ascii")}
        assert boxes[k].tolist() == mask_utils.toBbox(reference).tolist()
        assert runs.area_px[k] == np.count_nonzero(labels == instance_id)


def test_runs_that_wrap_from_one_column_into_the_next_are_joined():
    labels = np.zeros((5, 3), np.uint32)
    labels[3:, 0] = 9  # bottom of column 0 ...
    labels[:2, 1] = 9  # ... continues at the top of column 1: one run in column-major order
    labels[4, 2] = 70_000
    runs = rle.label_runs(labels)
    assert runs.ids.tolist() == [9, 70_000]
    assert runs.starts.tolist() == [3, 14] and runs.lengths.tolist() == [4, 1]
    assert rle.bboxes_xywh(runs).tolist() == [[0.0, 0.0, 2.0, 5.0], [2.0, 4.0, 1.0, 1.0]]  # toBbox's rule


@pytest.mark.parametrize(
    "labels",
    [
        np.zeros((4, 3), np.uint32),  # background only
        np.full((4, 3), (1 << 32) - 1, np.uint32),  # no background, an id counted by its rank
        np.array([[5, 5, 1 << 31], [0, 5, 1 << 31]], np.uint32),  # ranks with background
    ],
)
def test_images_without_background_or_without_instances(labels):
    runs = rle.label_runs(labels)
    present = np.unique(labels)
    assert runs.ids.tolist() == present[present > 0].tolist()
    for instance_id, encoded in zip(runs.ids, rle.instance_rles(runs), strict=True):
        assert encoded["counts"] == _reference_rle(labels, instance_id)
