"""Real QuPath GeoJSON exports: every object, id and class goes in and comes back out."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_instseg._reader import get_reader
from napari_instseg.cli import main
from napari_instseg.core.geojson import import_geojson, load_geojson

DATA = Path(__file__).resolve().parents[1] / "data"
CELLS = DATA / "qupath_single_cells.geojson"  # 121 cells inside a region annotation, circles, 3 points
REGIONS = DATA / "qupath_td01_regions_points.geojson"  # region annotations and calibration points
SHAPE = ["--shape", "1000", "1000"]  # the demo image TD_01_verysmall_mIF.ome.tif is 1000 x 1000


def _import_export(tmp_path: Path, source: Path, capsys, extra=SHAPE) -> tuple[Path, object]:
    outdir = tmp_path / "imported"
    assert main(["import", str(source), "-o", str(outdir), *extra]) == 0
    out = tmp_path / "back.geojson"
    assert main(["export", str(outdir), "-o", str(out)]) == 0
    capsys.readouterr()
    return outdir, json.loads(out.read_text())


def test_cells_nested_in_a_region_keep_their_pixels_and_everything_comes_back(tmp_path, capsys):
    document = load_geojson(CELLS)
    imported = import_geojson(document, (1000, 1000))
    cells = [
        i
        for f, i in zip(imported.features, imported.instance_ids, strict=True)
        if i and f["properties"]["objectType"] == "cell"
    ]
    assert len(cells) == 121
    visible = dict(zip(*np.unique(imported.labels_yx, return_counts=True), strict=False))
    assert all(visible.get(i, 0) == imported.masks[i].area_px > 0 for i in cells)  # nothing lost to the region
    assert [f["properties"].get("name") for f in imported.passthrough] == ["calib1", "calib2", "calib3"]
    names = [c.name for c in imported.protocol.categories]
    assert names == ["class_1", "single_cells_demo", "circles", "two_circles"]
    assert imported.protocol.categories[0].color == "#038011"  # QuPath's colour [3, 128, 17]

    outdir, back = _import_export(tmp_path, CELLS, capsys)
    assert back == document  # every feature: id, objectType, name, measurements, isLocked, geometry
    report = pd.read_csv(next(outdir.glob("*_overlaps.csv")), keep_default_na=False)
    region = report[report["feature_id"] == document["features"][0]["id"]].iloc[0]
    assert region["lost_px"] > 0 and len(region["covered_by"].split()) >= 100  # the cells lie in front


def test_region_annotations_and_calibration_points_round_trip_as_a_plain_array(tmp_path, capsys):
    document = load_geojson(REGIONS)
    array = tmp_path / "as_array.geojson"  # QuPath's export without FeatureCollection
    array.write_text(json.dumps(document["features"]))
    _, back = _import_export(tmp_path, array, capsys)
    assert back == document["features"]
    assert sum(f["geometry"]["type"] == "Point" for f in back) == 3


def test_edited_objects_are_written_back_with_their_edits_only(tmp_path, capsys):
    outdir = tmp_path / "imported"
    assert main(["import", str(CELLS), "-o", str(outdir), *SHAPE]) == 0
    document = load_geojson(CELLS)
    source = json.loads((outdir / "geojson_source.json").read_text())
    ids = source["instance_ids"]
    labels_path, table_path = outdir / "qupath_single_cells_labels.tif", outdir / "qupath_single_cells_instances.csv"
    labels = tifffile.imread(labels_path)
    table = pd.read_csv(table_path)
    cell_rows = [k for k, f in enumerate(document["features"]) if f["properties"]["objectType"] == "cell"]
    erased, retagged = ids[cell_rows[0]], ids[cell_rows[1]]
    ys, xs = np.nonzero(labels == erased)
    keep = ys < np.median(ys)
    labels[ys[~keep], xs[~keep]] = 0
    tifffile.imwrite(labels_path, labels, compression="zlib")
    table.loc[table["id"] == retagged, "category_id"] = 1  # class_1
    table.to_csv(table_path, index=False)
    out = tmp_path / "edited.geojson"
    assert main(["export", str(outdir), "-o", str(out)]) == 0
    back = json.loads(out.read_text())
    assert len(back["features"]) == len(document["features"])
    for k, (before, after) in enumerate(zip(document["features"], back["features"], strict=True)):
        if k == cell_rows[0]:
            assert after["properties"] == before["properties"] and after["id"] == before["id"]
            assert after["geometry"] != before["geometry"]
            again = import_geojson({"type": "FeatureCollection", "features": [after]}, (1000, 1000))
            assert np.array_equal(again.labels_yx > 0, labels == erased)
        elif k == cell_rows[1]:
            assert after["properties"]["classification"] == {"name": "class_1", "color": [3, 128, 17]}
            rest = {key: v for key, v in after["properties"].items() if key != "classification"}
            assert rest == {key: v for key, v in before["properties"].items() if key != "classification"}
            assert after["geometry"] == before["geometry"]
        else:
            assert after == before


def test_strings_nuclei_lines_and_points_never_fail_the_import(tmp_path, capsys):
    square = [[[10, 10], [30, 10], [30, 30], [10, 30], [10, 10]]]
    nucleus = {"type": "Polygon", "coordinates": [[[15, 15], [20, 15], [20, 20], [15, 20], [15, 15]]]}
    features = [
        {
            "type": "Feature",
            "id": "a",
            "geometry": {"type": "Polygon", "coordinates": square},
            "nucleusGeometry": nucleus,
            "properties": {"objectType": "cell", "classification": "Tumor", "measurements": {"Area": 400.0}},
        },
        {
            "type": "Feature",
            "id": "b",
            "geometry": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]},
            "properties": {"objectType": "annotation"},
        },
        {
            "type": "Feature",
            "id": "c",
            "geometry": {"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]},
            "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "colorRGB": -65536}},
        },
        {"type": "Feature", "id": "d", "geometry": None, "properties": {}},
        {
            "type": "Feature",
            "id": "e",
            "geometry": {"type": "Polygon", "coordinates": square},
            "properties": {"objectType": "annotation"},
        },
    ]
    path = tmp_path / "mixed.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    imported = import_geojson(load_geojson(path), (40, 40))
    assert [c.name for c in imported.protocol.categories] == ["Tumor", "Unclassified"]
    assert imported.instance_ids == [1, None, None, None, 2]
    assert (imported.labels_yx == 1).sum() == 400  # equal areas: the earlier object is in front
    points, _ = imported.points_yx()
    assert points.tolist() == [[2.0, 1.0], [4.0, 3.0]]
    image = tmp_path / "slide.tif"
    tifffile.imwrite(image, np.zeros((40, 40), np.uint8))
    _, back = _import_export(tmp_path, path, capsys, extra=["--image", str(image)])
    assert back["features"] == features
    # a protocol without the file's class: one clear error, exit 2, nothing written
    protocol = tmp_path / "p.json"
    protocol.write_text(json.dumps({"categories": [{"id": 1, "name": "Stroma"}]}))
    assert (
        main(["import", str(path), "-o", str(tmp_path / "no"), "--shape", "40", "40", "--protocol", str(protocol)]) == 2
    )
    assert "class 'Tumor' is not in the protocol" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    assert main(["import", str(path), "-o", str(tmp_path / "no")]) == 2
    assert "--image IMAGE or --shape H W" in capsys.readouterr().err


def test_napari_reader_places_objects_and_points_on_the_image_beside(tmp_path):
    document = load_geojson(REGIONS)
    path = tmp_path / "TD_01.geojson"
    path.write_text(json.dumps(document))
    tifffile.imwrite(tmp_path / "TD_01.ome.tif", np.zeros((1000, 1000), np.uint8), tile=(256, 256))
    reader = get_reader(str(path))
    assert reader is not None
    layers = reader(str(path))
    (labels, kwargs, kind), (points, point_kwargs, point_kind) = layers
    assert kind == "labels" and point_kind == "points"
    y0, x0 = kwargs["translate"]
    whole = import_geojson(copy.deepcopy(document), (1000, 1000)).labels_yx
    assert np.array_equal(whole[y0 : y0 + labels.shape[0], x0 : x0 + labels.shape[1]], labels)
    assert whole[:y0].sum() == 0 and len(kwargs["features"]) == 6
    assert len(points) == 3 and list(point_kwargs["features"]["name"]) == ["calib1", "calib2", "calib3"]
    assert get_reader(str(tmp_path / "TD_01.ome.tif")) is not None  # the slide reader, not this one


@pytest.mark.parametrize("text", ['{"type": "Polygon", "coordinates": []}', "[]", '{"features": []}'])
def test_reader_declines_what_is_not_feature_geojson(tmp_path, text):
    path = tmp_path / "x.geojson"
    path.write_text(text)
    assert get_reader(str(path)) is None


def test_category_ids_of_another_taxonomy_follow_the_class_name_and_come_back(tmp_path, capsys):
    """Without --protocol the class name decides (a file's ``category_id`` may belong to another
    taxonomy); the export's replay uses the same rule, so nothing changes on the way back."""
    square = [[[2, 2], [12, 2], [12, 12], [2, 12], [2, 2]]]
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": square},
            "properties": {"classification": {"name": "Tumor"}, "category_id": 7, "instance_id": 3},
        }
    ]
    path = tmp_path / "other.geojson"
    path.write_text(json.dumps(features))
    imported = import_geojson(load_geojson(path), (20, 20))
    assert imported.by_class_name and imported.table.loc[3, "category_id"] == 1
    _, back = _import_export(tmp_path, path, capsys, extra=["--shape", "20", "20"])
    assert back == features
