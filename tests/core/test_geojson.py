"""QuPath GeoJSON: valid geometry (shapely), level-0 coordinates, holes, parts, round trip."""

import json

import numpy as np
import pytest
import shapely.geometry

from napari_instseg.core.geojson import GeoJSONError, geojson_to_labels, labels_to_geojson, save_geojson
from napari_instseg.core.instances import make_rows
from napari_instseg.core.protocol import AnnotationProtocol, Category


@pytest.fixture
def annotated():
    from skimage.draw import disk

    labels = np.zeros((80, 100), np.uint32)
    rr, cc = disk((20, 20), 12)
    labels[rr, cc] = 4
    rr, cc = disk((20, 20), 4)
    labels[rr, cc] = 0  # a hole
    labels[50:60, 10:20] = 9
    labels[65:75, 40:50] = 9  # two parts
    labels[40:70, 70:95] = 12
    protocol = AnnotationProtocol(categories=(Category(1, "tumour", "cell", "#ff0000"), Category(2, "stroma")))
    table = make_rows(
        [4, 9, 12],
        category_id=[1, 2, 1],
        occlusion=["none", "heavy", "partial"],
        z_order=[0, 2, 1],
        source=["sam2", "manual", "classic"],
        review=["accepted", "accepted", "pre-label"],
    )
    return labels, table, protocol


def test_features_are_valid_polygons_with_holes_and_parts(annotated, tmp_path):
    labels, table, protocol = annotated
    collection = labels_to_geojson(labels, table, protocol, origin_yx=(1000, 2000))
    save_geojson(collection, tmp_path / "a.geojson")
    loaded = json.loads((tmp_path / "a.geojson").read_text())
    by_id = {f["properties"]["instance_id"]: f for f in loaded["features"]}
    ring = shapely.geometry.shape(by_id[4]["geometry"])
    assert ring.is_valid and ring.geom_type == "Polygon" and len(ring.interiors) == 1
    assert abs(ring.area - (labels == 4).sum()) / (labels == 4).sum() < 0.1
    parts = shapely.geometry.shape(by_id[9]["geometry"])
    assert parts.is_valid and parts.geom_type == "MultiPolygon" and len(parts.geoms) == 2
    # level-0 coordinates: the window origin (y 1000, x 2000) is added
    centroid = shapely.geometry.shape(by_id[12]["geometry"]).centroid
    assert (centroid.x, centroid.y) == pytest.approx((2000 + 82.5, 1000 + 55.0), abs=0.5)
    props = by_id[4]["properties"]
    assert props["objectType"] == "detection" and props["classification"] == {"name": "tumour", "color": [255, 0, 0]}
    assert by_id[9]["properties"]["occlusion"] == "heavy" and by_id[9]["properties"]["z_order"] == 2


def test_round_trip_maps_back_to_the_same_instances(annotated):
    labels, table, protocol = annotated
    collection = labels_to_geojson(labels, table, protocol, origin_yx=(1000, 2000))
    back, back_table = geojson_to_labels(collection, labels.shape, protocol, origin_yx=(1000, 2000))
    for instance_id in (4, 9, 12):
        truth, got = labels == instance_id, back == instance_id
        assert (truth & got).sum() / (truth | got).sum() > 0.85
    assert not back[20, 20]  # the hole stays a hole
    assert back_table.loc[9, "category_id"] == 2 and back_table.loc[12, "review"] == "pre-label"
    assert back_table.loc[4, "source"] == "sam2"


def test_bad_geojson_is_named():
    with pytest.raises(GeoJSONError, match="FeatureCollection"):
        geojson_to_labels({"type": "Polygon", "coordinates": []}, (10, 10))
    point = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}],
    }
    labels, table = geojson_to_labels(point, (10, 10))  # a Point is kept aside, never an error
    assert not labels.any() and table.empty
    with pytest.raises(GeoJSONError, match=r"features\[0\]: expected a Feature object, got 3"):
        geojson_to_labels({"type": "FeatureCollection", "features": [3]}, (10, 10))


def test_cli_exports_geojson_from_a_store(tmp_path, annotated):
    from napari_instseg.cli import main
    from napari_instseg.core.store import AnnotationStore

    labels, table, protocol = annotated
    AnnotationStore.create(tmp_path / "s.zarr", labels, protocol, table=table).close()
    assert main(["export", str(tmp_path / "s.zarr"), "-o", str(tmp_path / "s.geojson")]) == 0
    collection = json.loads((tmp_path / "s.geojson").read_text())
    assert sorted(f["properties"]["instance_id"] for f in collection["features"]) == [4, 9, 12]
    assert all(shapely.geometry.shape(f["geometry"]).is_valid for f in collection["features"])


@pytest.mark.parametrize(
    ("name", "content", "claimed"),
    [
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, False),  # not ours: None, never RecursionError
        ("notes.json", b'{"a": ', False),
        ("deep.geojson", b'{"type": "FeatureCollection", "features": ' + b"[" * 100_000, True),
        ("cut.json", b'{"type": "FeatureCollection", "features": [', True),
    ],
)
def test_reader_on_broken_json_declines_or_gives_a_clear_error(tmp_path, name, content, claimed):
    from napari_instseg._reader import get_reader

    path = tmp_path / name
    path.write_bytes(content)
    reader = get_reader(str(path))
    assert (reader is not None) == claimed
    if reader is not None:
        with pytest.raises(GeoJSONError, match=rf"{name}: (JSON nested too deeply|not valid JSON)"):
            reader(str(path))


def test_ids_kept_where_given_and_malformed_area_features_named():
    from napari_instseg.core.geojson import import_geojson

    ring = [[2, 2], [10, 2], [10, 10], [2, 10], [2, 2]]

    def area(**properties):
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": properties}

    imported = import_geojson([area(), area(instance_id=7), area()], (20, 20))
    assert imported.instance_ids == [8, 7, 9]
    with pytest.raises(
        GeoJSONError, match=r"x: features\[1\]\.properties\.instance_id: 7 is also the id of features\[0\]"
    ):
        import_geojson([area(instance_id=7), area(instance_id=7)], (20, 20), source="x")
    with pytest.raises(GeoJSONError, match=r"features\[0\]\.properties\.annotator: expected a string"):
        import_geojson([area(annotator=["a"])], (20, 20))
    measured = area(measurements={"Area": 64.0}, color=[255, 0, 0], classification="Tumor")
    assert import_geojson([measured], (20, 20)).protocol.categories[0].name == "Tumor"
