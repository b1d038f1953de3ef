"""Batch pre-labelling of a slide on dask: threads and a LocalCluster give the same store;
an interrupted run resumes."""

import numpy as np
import pandas as pd
import pytest
import zarr

from napari_instseg.core.batch import BatchConfig, prelabel_slide, tissue_tiles
from napari_instseg.core.coords import tile_origin_yx
from napari_instseg.core.prompting import Prompt
from napari_instseg.core.slide import open_slide
from napari_instseg.core.store import AnnotationStore

VOLATILE = ["created", "modified", "time_s"]


TILE = 256


def make_slide(path, tiles=2, tile_px=TILE):
    """A zarr slide of IHC crops (real tissue) with a blank glass margin, and a 4x level."""
    from skimage import data

    ihc = data.immunohistochemistry()[:tile_px, :tile_px]
    side = tile_px * (tiles + 1)
    image = np.full((side, side, 3), 235, np.uint8)  # glass
    image[: tile_px * tiles, : tile_px * tiles] = np.tile(ihc, (tiles, tiles, 1))
    root = zarr.open_group(str(path), mode="w")
    root.create_array("0", data=image, chunks=(tile_px, tile_px, 3))
    root.create_array("1", data=image[::4, ::4], chunks=(tile_px, tile_px, 3))
    return path


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    return make_slide(tmp_path_factory.mktemp("slide") / "ihc.zarr")


def _state(store_path):
    with AnnotationStore.open(store_path, read_only=True) as store:
        return store.read_labels(), store.table.drop(columns=VOLATILE)


def test_tissue_tiles_skip_the_glass(slide_path):
    slide = open_slide(slide_path)
    tiles = tissue_tiles(slide, TILE)
    assert {(r, c) for r in range(2) for c in range(2)} <= tiles
    assert (2, 2) not in tiles  # the glass corner


def test_threads_and_local_cluster_give_the_same_store(slide_path, tmp_path):
    from distributed import Client, LocalCluster

    config = BatchConfig(backend="classic", tile_px=TILE, halo_px=32)
    threaded = prelabel_slide(slide_path, tmp_path / "threads.zarr", detect=True, config=config, workers=2)
    assert threaded.n_committed > 100 and threaded.n_tiles >= 4
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        clustered = prelabel_slide(slide_path, tmp_path / "cluster.zarr", detect=True, config=config, scheduler=client)
    assert clustered.n_committed == threaded.n_committed
    labels_a, table_a = _state(tmp_path / "threads.zarr")
    labels_b, table_b = _state(tmp_path / "cluster.zarr")
    np.testing.assert_array_equal(labels_a, labels_b)
    pd.testing.assert_frame_equal(table_a, table_b)
    assert set(table_a["review"]) == {"pre-label"} and set(table_a["source"]) == {"classic"}


def test_an_interrupted_run_resumes(slide_path, tmp_path):
    config = BatchConfig(backend="classic", tile_px=128, halo_px=16)
    prompts = [Prompt.make(points_yx=[[y, x]]) for y in range(20, 512, 70) for x in range(20, 512, 70)]

    def interrupt(done, total):
        raise KeyboardInterrupt  # after the first batch of tiles

    with pytest.raises(KeyboardInterrupt):
        prelabel_slide(slide_path, tmp_path / "resumed.zarr", prompts, config=config, workers=1, progress=interrupt)
    resumed = prelabel_slide(slide_path, tmp_path / "resumed.zarr", prompts, config=config, workers=1)
    assert resumed.n_skipped_done > 0
    prelabel_slide(slide_path, tmp_path / "whole.zarr", prompts, config=config, workers=1)
    labels_a, table_a = _state(tmp_path / "resumed.zarr")
    labels_b, table_b = _state(tmp_path / "whole.zarr")
    np.testing.assert_array_equal(labels_a, labels_b)
    pd.testing.assert_frame_equal(table_a, table_b)


def test_cli_prelabel_slide_and_per_tile_export(slide_path, tmp_path):
    import json

    from pycocotools import mask as mask_utils

    from napari_instseg.cli import main

    (tmp_path / "points.csv").write_text("y,x\n60,60\n300,300\n")
    args = [
        "prelabel-slide",
        str(slide_path),
        "--store",
        str(tmp_path / "s.zarr"),
        "--points",
        str(tmp_path / "points.csv"),
        "--backend",
        "classic",
        "--tile",
        "256",
        "--halo",
        "16",
    ]
    assert main(args) == 0
    assert main(["export", str(tmp_path / "s.zarr"), "-o", str(tmp_path / "tiles.json"), "--per-tile", "256"]) == 0
    coco = json.loads((tmp_path / "tiles.json").read_text())
    origins = sorted(tile_origin_yx(im) for im in coco["images"])
    assert all(im["tile_origin_axes"] == "yx" for im in coco["images"])
    assert origins == [(0, 0), (256, 256)] and all(im["level"] == 0 and im["slide"] for im in coco["images"])
    labels = _state(tmp_path / "s.zarr")[0]
    for ann in coco["annotations"]:  # tile coordinates + tile_origin = slide coordinates
        image = next(im for im in coco["images"] if im["id"] == ann["image_id"])
        y0, x0 = image["tile_origin"]  # [y, x] like everything else
        tile_mask = mask_utils.decode(ann["segmentation"]).astype(bool)
        np.testing.assert_array_equal(labels[y0 : y0 + 256, x0 : x0 + 256] == ann["instance_id"], tile_mask)


def test_sam2_tiles_are_embedded_once_and_cached(slide_path, tmp_path, sam2_checkpoint, monkeypatch):
    from napari_instseg.cli import main

    monkeypatch.setenv("NAPARI_INSTSEG_CACHE", str(tmp_path / "cache"))
    (tmp_path / "points.csv").write_text("y,x\n60,60\n100,90\n")
    args = [
        "prelabel-slide",
        str(slide_path),
        "--store",
        str(tmp_path / "s.zarr"),
        "--points",
        str(tmp_path / "points.csv"),
        "--backend",
        "sam2",
        "--checkpoint",
        str(sam2_checkpoint),
        "--device",
        "cpu",
        "--tile",
        "256",
        "--halo",
        "16",
        "--workers",
        "1",
    ]
    assert main(args) == 0
    cache = zarr.open_group(str(tmp_path / "cache" / "embeddings.zarr"), mode="r")
    entries = list(cache.group_keys())
    assert len(entries) == 1  # both prompts lie in one tile: one embedding, keyed by the tile's region
    assert cache[entries[0]].attrs["region_yx"] == [0, 0, 272, 272]
    _, table = _state(tmp_path / "s.zarr")
    assert set(table["source"]) == {"sam2"}


def test_a_rerun_on_another_tile_grid_is_refused_before_any_work(slide_path, tmp_path, capsys):
    """Done tiles are named by (row, col) of the first run's grid: a resume with another
    --tile / --halo would skip the wrong tiles, so it is refused (exit 2), the store unchanged."""
    from napari_instseg.cli import main

    store = tmp_path / "grid.zarr"
    config = BatchConfig(backend="classic", tile_px=128, halo_px=16)
    prompts = [Prompt.make(points_yx=[[y, x]]) for y in range(20, 512, 70) for x in range(20, 512, 70)]
    prelabel_slide(slide_path, store, prompts, config=config, workers=1)
    labels, table = _state(store)
    argv = ["prelabel-slide", str(slide_path), "--store", str(store), "--detect", "--tile", "256", "--halo", "16"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "128 px tiles with a 16 px halo" in err and "--tile 128 --halo 16" in err
    labels_after, table_after = _state(store)
    np.testing.assert_array_equal(labels, labels_after)
    pd.testing.assert_frame_equal(table, table_after)
    again = prelabel_slide(slide_path, store, prompts, config=config, workers=1)  # the same grid resumes
    assert again.n_skipped_done == again.n_tiles
