import numpy as np
import pandas as pd
import pytest

from napari_instseg.core.errors import TableError
from napari_instseg.core.instances import (
    COLUMNS,
    IdAllocator,
    from_features,
    make_rows,
    table_for_ids,
    to_features,
    validate_table,
)


def test_rows_get_schema_defaults_in_order():
    table = make_rows([4, 2])
    assert list(table.columns) == list(COLUMNS)
    assert table.index.tolist() == [4, 2] and table.index.name == "id"
    row = table.loc[4]
    assert (row.occlusion, row.review, row.source, bool(row.iscrowd)) == ("none", "accepted", "manual", False)
    assert np.isnan(row.occluded_fraction) and np.isnan(row.prelabel_iou)


def test_features_round_trip_with_index_column(labels_and_table):
    _, table = labels_and_table
    features = to_features(table)
    assert features["index"].tolist() == [3, 9, 12, 40]
    assert isinstance(features.index, pd.RangeIndex)
    pd.testing.assert_frame_equal(from_features(features), table)


def test_from_features_drops_background_row_and_needs_index(labels_and_table):
    _, table = labels_and_table
    features = to_features(table)
    background = features.iloc[:1].copy()
    background["index"] = 0
    with_background = pd.concat([background, features], ignore_index=True)
    assert from_features(with_background).index.tolist() == [3, 9, 12, 40]
    with pytest.raises(TableError, match="no 'index' column"):
        from_features(features.drop(columns="index"))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (
            "occlusion",
            "mostly",
            r"instance 9: column 'occlusion' has 'mostly'; expected one of \('none', 'partial', 'heavy'\)",
        ),
        ("review", "maybe", "instance 9: column 'review' has 'maybe'"),
        ("z_order", 1.5, "instance 9: column 'z_order' has 1.5; expected an integer"),
        ("iscrowd", "sometimes", "instance 9: column 'iscrowd' has 'sometimes'; expected a boolean"),
    ],
)
def test_invalid_values_name_the_instance_and_column(labels_and_table, column, value, message):
    _, table = labels_and_table
    bad = table.copy()
    bad[column] = bad[column].astype(object)
    bad.loc[9, column] = value
    with pytest.raises(TableError, match=message):
        validate_table(bad, source="t.csv")


def test_duplicate_and_background_ids_are_refused():
    with pytest.raises(TableError, match=r"duplicate instance id\(s\) \[2\]"):
        validate_table(make_rows([1, 2]).rename(index={1: 2}))
    with pytest.raises(TableError, match="must be >= 1"):
        validate_table(make_rows([1]).rename(index={1: 0}))


def test_validate_does_not_mutate_its_input(labels_and_table):
    _, table = labels_and_table
    raw = table.copy()
    raw["iscrowd"] = raw["iscrowd"].astype(int)
    before = raw.copy()
    validate_table(raw)
    pd.testing.assert_frame_equal(raw, before)


def test_table_for_ids_adds_default_rows(labels_and_table):
    _, table = labels_and_table
    out = table_for_ids([40, 7], table, defaults={"category_id": 5})
    assert out.index.tolist() == [40, 7]
    assert out.loc[7, "category_id"] == 5 and out.loc[40, "iscrowd"]


def test_ids_are_never_reused():
    allocator = IdAllocator()
    assert allocator.allocate(3) == [1, 2, 3]
    # deleting instance 3 does not free its id
    assert allocator.allocate() == [4]
    allocator.observe([2, 10])
    assert allocator.allocate(2) == [11, 12]
    allocator.observe([5])
    assert allocator.next_id == 13
    with pytest.raises(TableError, match="next_id must be >= 1"):
        IdAllocator(0)
