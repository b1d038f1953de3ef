"""``prelabel IMAGE --auto`` and ``prelabel-slide --auto`` as users run them (classic, no weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_instseg.cli import main


@pytest.fixture(scope="module")
def dsb_files(tmp_path_factory):
    data = pytest.importorskip("stardist.data")
    image, truth = data.test_image_nuclei_2d(return_mask=True)
    folder = tmp_path_factory.mktemp("dsb")
    tifffile.imwrite(folder / "dsb.tif", image)
    tifffile.imwrite(folder / "truth.tif", truth.astype(np.uint32))
    return folder


def test_prelabel_auto_writes_scored_coco_that_qa_ranks(dsb_files, tmp_path, capsys):
    out = tmp_path / "auto.json"
    argv = ["prelabel", str(dsb_files / "dsb.tif"), "--auto", "--backend", "classic", "--auto-tile", "256"]
    assert main([*argv, "--auto-halo", "48", "--auto-workers", "2", "-o", str(out)]) == 0
    coco = json.loads(out.read_text())
    anns = coco["annotations"]
    assert len(anns) > 80 and all(0 <= a["score"] <= 1 for a in anns)
    assert {a["attributes"]["source"] for a in anns} == {"classic-auto"}
    assert {a["attributes"]["review"] for a in anns} == {"pre-label"}
    assert "committed as pre-labels (classic-auto)" in capsys.readouterr().out
    # a second run gives the same file content (deterministic), inputs untouched
    again = tmp_path / "again.json"
    assert main([*argv, "--auto-halo", "48", "-o", str(again)]) == 0
    strip = [{k: v for k, v in a.items() if k != "attributes"} for a in anns]
    assert strip == [
        {k: v for k, v in a.items() if k != "attributes"} for a in json.loads(again.read_text())["annotations"]
    ]
    # qa ranks by the score: the reference exported from the hand-made mask
    gt = tmp_path / "gt.json"
    assert main(["export", str(dsb_files / "truth.tif"), "-o", str(gt)]) == 0
    assert main(["qa", "--gt", str(gt), "--dt", str(out), "-o", str(tmp_path / "qa")]) == 0
    report = json.loads((tmp_path / "qa" / "report.json").read_text())
    assert report["overall"]["AP50"] >= 0.7  # tiled at 256 px; untiled: 0.85 (test_auto_classic)


def test_prelabel_slide_auto_commits_each_object_once(tmp_path):
    from skimage import data

    from napari_instseg.core.store import AnnotationStore

    ihc = data.immunohistochemistry()[:256, :512]
    slide = tmp_path / "ihc.tif"
    tifffile.imwrite(slide, ihc)
    store = tmp_path / "store.zarr"
    argv = ["prelabel-slide", str(slide), "--store", str(store), "--auto", "--backend", "classic", "--tile", "128"]
    assert main([*argv, "--halo", "32", "--workers", "2"]) == 0
    with AnnotationStore.open(store, read_only=True) as opened:
        labels, table = opened.read_labels(), opened.table
    assert len(table) > 30 and set(table["source"]) == {"classic-auto"}
    assert set(np.unique(labels)) - {0} == set(table.index)
    assert main([*argv, "--halo", "32"]) == 0  # rerun: tiles done are skipped, nothing doubled
    with AnnotationStore.open(store, read_only=True) as opened:
        assert len(opened.table) == len(table)
    exported = tmp_path / "slide.json"
    assert main(["export", str(store), "-o", str(exported)]) == 0
    anns = json.loads(exported.read_text())["annotations"]
    assert len(anns) == len(table) and all(0 <= a["score"] <= 1 for a in anns)


def _large_objects_slide(tmp_path, halo):
    """A slide whose objects are three halos across, on a four-tile corner and across seams
    (tiles of 128 px), beside smaller ones; also its labels untiled by the classic mode."""
    from skimage.draw import ellipse

    from napari_instseg.core.prompting.auto import ClassicAutoSegmenter
    from napari_instseg.core.stitch import paint_objects

    rng = np.random.default_rng(4)
    truth = np.zeros((384, 384), np.uint32)
    centres = [(128, 128), (256, 256), (60, 256), (250, 64), (320, 150), (330, 330)]  # corners, seams, inside
    for k, (cy, cx) in enumerate(centres, start=1):
        rr, cc = ellipse(cy, cx, 1.5 * halo * rng.uniform(0.9, 1), 1.4 * halo, truth.shape, rng.uniform(0, 3))
        truth[rr, cc] = k
    image = np.clip(np.where(truth > 0, 180, 20) + rng.normal(0, 8, truth.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "large.tif"
    tifffile.imwrite(path, image)
    return path, truth, paint_objects(ClassicAutoSegmenter()(image), truth.shape)


def test_prelabel_slide_auto_merges_objects_larger_than_the_halo_across_tiles(tmp_path):
    from napari_instseg.core.store import AnnotationStore

    halo = 32
    slide, truth, untiled = _large_objects_slide(tmp_path, halo)
    results = []
    for name, workers in (("one.zarr", "1"), ("two.zarr", "2")):
        store = tmp_path / name
        argv = ["prelabel-slide", str(slide), "--store", str(store), "--auto", "--backend", "classic"]
        assert main([*argv, "--tile", "128", "--halo", str(halo), "--workers", workers]) == 0
        with AnnotationStore.open(store, read_only=True) as opened:
            labels, table = opened.read_labels(), opened.table
            assert _n_pending(opened) == 0  # every tile done: nothing left waiting
        for k in range(1, truth.max() + 1):
            inside = labels[truth == k]
            hits = [h for h in np.unique(inside) if h and (inside == h).sum() > 5]
            assert len(hits) == 1, f"object {k} committed as {len(hits)} instances"
            best = np.bincount(untiled[truth == k]).argmax()
            union = np.count_nonzero((labels == hits[0]) | (untiled == best))
            assert np.count_nonzero((labels == hits[0]) & (untiled == best)) / union >= 0.9, f"object {k}"
        assert set(np.unique(labels)) - {0} == set(table.index)
        results.append(labels)
        assert main([*argv, "--tile", "128", "--halo", str(halo)]) == 0  # rerun: nothing doubled
        with AnnotationStore.open(store, read_only=True) as opened:
            assert len(opened.table) == len(table)
    np.testing.assert_array_equal(results[0], results[1])  # deterministic: 1 or 2 workers


def test_prelabel_slide_auto_resumes_an_interrupted_run_without_losing_seam_objects(tmp_path):
    from napari_instseg.core.batch import BatchConfig, prelabel_slide
    from napari_instseg.core.store import AnnotationStore

    slide, _, _ = _large_objects_slide(tmp_path, 32)
    config = BatchConfig(backend="classic", tile_px=128, halo_px=32)
    whole = tmp_path / "whole.zarr"
    prelabel_slide(slide, whole, auto="cells", config=config, workers=1)

    class Interrupted(Exception):
        pass

    def stop(done, total):
        raise Interrupted  # after the first batch of tiles: seam objects are still waiting

    broken = tmp_path / "broken.zarr"
    with pytest.raises(Interrupted):
        prelabel_slide(slide, broken, auto="cells", config=config, workers=1, progress=stop)
    with AnnotationStore.open(broken, read_only=True) as opened:
        assert _n_pending(opened) > 0
    prelabel_slide(slide, broken, auto="cells", config=config, workers=1)
    with AnnotationStore.open(whole, read_only=True) as a, AnnotationStore.open(broken, read_only=True) as b:
        np.testing.assert_array_equal(a.read_labels() > 0, b.read_labels() > 0)
        assert len(a.table) == len(b.table)


def _n_pending(store):
    """How many stitched objects wait in a store's seam buffer (saved with the tiles' commits)."""
    import io

    from napari_instseg.core.batch import PENDING_MARK

    with np.load(io.BytesIO(store.read_marks(PENDING_MARK)[PENDING_MARK])) as pending:
        return len(pending["boxes"])
