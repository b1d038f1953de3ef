"""Queries that need no full load (issue 13): instances in a region, counts by category /
tier / review state, pages, and the next pre-label to review in reading order."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.protocol import AnnotationProtocol, Category
from napari_instseg.core.store import AnnotationStore, StoreError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("queries")
    shape = (1024, 2048)
    protocol = AnnotationProtocol(categories=(Category(1, "tumour"), Category(2, "stroma")))
    with AnnotationStore.create(tmp_path / "q.zarr", shape, protocol) as opened:
        session = opened.window_session((0, 0, *shape))
        # a 4 x 8 grid of squares; odd columns are pre-labels (sam2)
        for row in range(4):
            for col in range(8):
                mask = np.zeros(shape, bool)
                mask[row * 256 + 20 : row * 256 + 60, col * 256 + 20 : col * 256 + 60] = True
                session.commit(mask, source="sam2" if col % 2 else "manual", category=1 + (row % 2))
        session.retag(2, occlusion="partial")
        session.accept(4)
        yield opened


def test_instances_in_a_region_come_from_the_r_tree(store):
    rows = store.instances_in((0, 0, 300, 600))  # rows 0-1, columns 0-2
    assert rows.index.tolist() == [1, 2, 3, 9, 10, 11]
    assert store.instances_in((100, 100, 200, 200)).empty
    assert store.bbox_of(10) == (276, 276, 316, 316)


def test_counts_by_review_state_category_and_tier(store):
    assert store.count_instances("review") == {"accepted": 17, "pre-label": 15}
    assert store.count_instances("category_id") == {1: 16, 2: 16}
    assert store.count_instances("occlusion") == {"none": 31, "partial": 1}
    assert store.count_instances("review", region_yx=(0, 0, 256, 2048)) == {"accepted": 5, "pre-label": 3}
    with pytest.raises(StoreError, match="Cannot select instances by 'area'"):
        store.count_instances("area")


def test_find_instances_by_value_in_pages(store):
    pages = [store.find_instances(review="pre-label", limit=4, offset=k).index.tolist() for k in (0, 4, 8, 12)]
    assert pages == [[2, 6, 8, 10], [12, 14, 16, 18], [20, 22, 24, 26], [28, 30, 32]]
    found = store.find_instances(review="pre-label", category_id=2, region_yx=(256, 0, 512, 1024))
    assert found.index.tolist() == [10, 12]


def test_next_prelabel_walks_in_reading_order(store):
    seen, current = [], None
    while (found := store.next_prelabel(current)) is not None:
        current = found[0]
        seen.append(current)
    # row by row (256-px bands), left to right; 4 was accepted
    assert seen == [2, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32]
    assert store.next_prelabel() == (2, (20, 276, 60, 316))
