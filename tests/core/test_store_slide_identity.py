"""A store records which slide it belongs to; ``prelabel-slide --store`` refuses another
slide's store (issue 9), and batch pre-labels land where their prompts are on a non-square
slide (x / y not swapped)."""

from __future__ import annotations

import numpy as np
import zarr

from napari_instseg.cli import main
from napari_instseg.core.store import AnnotationStore


def _slide(path, shape_yx, seed, centres=()):
    """A non-square zarr slide with dark blobs (nuclei) on bright glass."""
    rng = np.random.default_rng(seed)
    image = np.full((*shape_yx, 3), 235, np.uint8)
    ys = rng.integers(20, shape_yx[0] - 20, 12)
    xs = rng.integers(20, shape_yx[1] - 20, 12)
    for y, x in [*zip(ys, xs, strict=True), *centres]:
        image[y - 6 : y + 6, x - 6 : x + 6] = (90, 40, 120)
    root = zarr.open_group(str(path), mode="w")
    root.create_array("0", data=image, chunks=(128, 128, 3))
    return path, image


def _prelabel(slide, store, points_csv):
    options = ["--backend", "classic", "--tile", "128", "--halo", "16"]
    return main(["prelabel-slide", str(slide), "--store", str(store), "--points", str(points_csv), *options])


def test_prelabel_slide_refuses_another_slides_store(tmp_path, capsys):
    slide_a, _ = _slide(tmp_path / "a.zarr", (256, 512), 1)
    slide_b, _ = _slide(tmp_path / "b.zarr", (256, 512), 2)  # same shape, other pixels
    slide_c, _ = _slide(tmp_path / "c.zarr", (512, 256), 1)  # the same slide size, turned
    points = tmp_path / "p.csv"
    points.write_text("y,x\n40,200\n")  # inside both shapes: the store check speaks, not the prompt check
    store = tmp_path / "s.zarr"
    assert _prelabel(slide_a, store, points) == 0
    with AnnotationStore.open(store, read_only=True) as opened:
        before = opened.read_labels(), opened.table
        assert opened.image["identity"]["shape_yx"] == [256, 512]
    capsys.readouterr()
    assert _prelabel(slide_b, store, points) == 2
    assert "belongs to slide 'a.zarr'" in capsys.readouterr().err
    assert _prelabel(slide_c, store, points) == 2
    assert "(256, 512), but slide" in capsys.readouterr().err
    with AnnotationStore.open(store, read_only=True) as opened:  # nothing written
        np.testing.assert_array_equal(opened.read_labels(), before[0])
        assert opened.table.index.tolist() == before[1].index.tolist()
    assert _prelabel(slide_a, store, points) == 0  # its own slide: a rerun (tiles done) is fine


def test_batch_prelabels_land_at_their_prompts_on_a_non_square_slide(tmp_path):
    y, x = 60, 580  # x beyond the slide's height: a swap would fall off the slide
    slide, _ = _slide(tmp_path / "a.zarr", (256, 640), 3, centres=[(y, x)])
    points = tmp_path / "p.csv"
    points.write_text(f"y,x\n{y},{x}\n")
    assert _prelabel(slide, tmp_path / "s.zarr", points) == 0
    with AnnotationStore.open(tmp_path / "s.zarr", read_only=True) as store:
        labels = store.read_labels()
        assert labels[y, x] != 0
        instance = int(labels[y, x])
        assert store.table.loc[instance, "review"] == "pre-label"
        proposal = store.read_side("prelabel")[instance].proposal
        y0, x0, y1, x1 = proposal.bbox_yx
        assert y0 <= y < y1 and x0 <= x < x1
