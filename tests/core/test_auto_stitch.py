"""Tiles with a halo and stitching, without model weights: synthetic objects across seams."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from napari_instseg.core.edits import CroppedMask
from napari_instseg.core.prompting.auto import ClassicAutoSegmenter, auto_objects, iter_auto_tiles
from napari_instseg.core.stitch import AutoObject, objects_from_labels, paint_objects, stitch, tile_grid

TILE, HALO = 128, 32


def _scene(seed: int = 0):
    """A 384 x 416 fluorescence-like image with nuclei on and off the seams (x, y = 128, 256).

    Returns (image, truth labels, ids of the objects that cross a seam).
    """
    rng = np.random.default_rng(seed)
    shape = (384, 416)
    truth = np.zeros(shape, np.uint32)
    centres = [(128, 60), (256, 200), (128, 256), (64, 128), (300, 256), (128, 128), (256, 384), (200, 300)]
    while len(centres) < 30:
        c = (int(rng.integers(15, shape[0] - 15)), int(rng.integers(15, shape[1] - 15)))
        if all(np.hypot(c[0] - a, c[1] - b) > 26 for a, b in centres):
            centres.append(c)
    crossing = []
    for k, (cy, cx) in enumerate(centres, start=1):
        rr, cc = ellipse(cy, cx, rng.uniform(7, 11), rng.uniform(7, 11), shape=shape, rotation=rng.uniform(0, np.pi))
        truth[rr, cc] = k
        ys, xs = rr, cc
        if any(ys.min() < s <= ys.max() for s in (128, 256)) or any(xs.min() < s <= xs.max() for s in (128, 256, 384)):
            crossing.append(k)
    image = np.where(truth > 0, 180, 20).astype(np.float64) + rng.normal(0, 8, shape)
    return np.clip(image, 0, 255).astype(np.uint8), truth, crossing


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_tile_grid_covers_every_pixel_once():
    tiles = tile_grid((300, 250), 128, 16)
    cover = np.zeros((300, 250), int)
    for t in tiles:
        y0, x0, y1, x1 = t.core_yx
        cover[y0:y1, x0:x1] += 1
        wy0, _, _, wx1 = t.window_yx
        assert wy0 == max(y0 - 16, 0) and wx1 == min(x1 + 16, 250)
    assert (cover == 1).all() and [t.index_yx for t in tiles][:3] == [(0, 0), (0, 1), (1, 0)]
    with pytest.raises(ValueError, match="tile_px=0"):
        tile_grid((10, 10), 0, 4)


def test_every_object_found_once_across_seams_and_close_to_untiled():
    image, truth, crossing = _scene()
    assert len(crossing) >= 8  # the scene does test the seams
    segmenter = ClassicAutoSegmenter()
    untiled = paint_objects(segmenter(image), image.shape)
    tiled_objects = auto_objects(image, segmenter, tile_px=TILE, halo_px=HALO)
    tiled = paint_objects(tiled_objects, image.shape)
    for k in range(1, truth.max() + 1):
        hits = np.unique(tiled[truth == k])
        hits = [h for h in hits if h and (tiled[truth == k] == h).sum() > 5]
        assert len(hits) == 1, f"object {k} found as {len(hits)} instances (crossing a seam: {k in crossing})"
        match = untiled[truth == k]
        best = np.bincount(match[match > 0]).argmax()
        assert _iou(tiled == hits[0], untiled == best) >= 0.9, f"object {k}"
    assert len(tiled_objects) == truth.max()


def test_stitching_is_deterministic_and_order_free():
    image, _, _ = _scene(seed=3)
    results = list(iter_auto_tiles(image, ClassicAutoSegmenter(), tile_px=TILE, halo_px=HALO))
    pairs = [(r.tile, r.objects) for r in results]
    first = paint_objects(stitch(pairs), image.shape)
    again = paint_objects(stitch(list(reversed(pairs))), image.shape)
    np.testing.assert_array_equal(first, again)
    parallel = auto_objects(image, ClassicAutoSegmenter, tile_px=TILE, halo_px=HALO, workers=2)
    np.testing.assert_array_equal(first, paint_objects(parallel, image.shape))


def test_an_object_larger_than_the_halo_is_merged_not_split():
    labels = np.zeros((256, 256), np.uint32)
    rr, cc = disk((128, 128), 45)  # 90 px across a seam with a 16 px halo
    labels[rr, cc] = 1
    tiles = tile_grid(labels.shape, 128, 16)
    per_tile = []
    for t in tiles:
        window = labels[t.slices]
        per_tile.append((t, objects_from_labels(window)))
    merged = stitch(per_tile)
    assert len(merged) == 1
    assert _iou(merged[0].mask.full((256, 256)), labels == 1) == 1.0


def test_two_touching_objects_from_different_tiles_stay_two():
    a = AutoObject(CroppedMask((0, 0, 10, 10), np.ones((10, 10), bool)), 0.9)
    b = AutoObject(CroppedMask((0, 9, 10, 19), np.ones((10, 10), bool)), 0.8)  # 1-px column shared
    tiles = tile_grid((10, 20), 10, 5)
    merged = stitch([(tiles[0], [a]), (tiles[1], [b.shifted(0, -tiles[1].origin_yx[1])])])
    assert len(merged) == 2


@pytest.mark.parametrize(
    "box_yx",
    [
        (118, 64, 138, 192),  # a bar 8 halos long across the vertical seam (x = 128)
        (64, 118, 192, 138),  # and across the horizontal one
        (64, 64, 192, 192),  # a square 8 halos wide on the four-tile corner
        (70, 40, 180, 150),  # off-centre on the corner
    ],
)
def test_fragments_of_an_object_far_larger_than_the_halo_match_on_the_halo_overlap(box_yx):
    labels = np.zeros((256, 256), np.uint32)
    y0, x0, y1, x1 = box_yx
    labels[y0:y1, x0:x1] = 1
    tiles = tile_grid(labels.shape, 128, 16)
    merged = stitch([(t, objects_from_labels(labels[t.slices])) for t in tiles])
    assert len(merged) == 1
    assert _iou(merged[0].mask.full((256, 256)), labels == 1) == 1.0


def _large_scene(seed: int, halo: int):
    """768 x 768, tiles of 256: objects three halos across on every four-tile corner, across
    seams (centred and off-centre) and inside tiles (every window holds some object)."""
    rng = np.random.default_rng(seed)
    shape = (768, 768)
    truth = np.zeros(shape, np.uint32)
    centres = [(256, 256), (256, 512), (512, 256), (512, 512)]  # four-tile corners
    centres += [(128, 384), (384, 140), (640, 404), (409, 640), (110, 110), (660, 660), (100, 660)]
    for k, (cy, cx) in enumerate(centres, start=1):
        radius = 1.5 * halo
        rr, cc = ellipse(
            cy, cx, radius * rng.uniform(0.92, 1), radius * rng.uniform(0.8, 0.95), rotation=rng.uniform(0, 3)
        )
        truth[rr, cc] = k
    image = np.where(truth > 0, 180, 20) + rng.normal(0, 8, shape)
    return np.clip(image, 0, 255).astype(np.uint8), truth


@pytest.mark.parametrize("seed", [0, 1])
def test_objects_three_halos_across_on_seams_and_corners_are_found_once(seed):
    halo = 32
    image, truth = _large_scene(seed, halo)
    segmenter = ClassicAutoSegmenter()
    untiled = paint_objects(segmenter(image), image.shape)
    objects = auto_objects(image, segmenter, tile_px=256, halo_px=halo)
    tiled = paint_objects(objects, image.shape)
    assert len(objects) == truth.max()
    for k in range(1, truth.max() + 1):
        hits = [h for h in np.unique(tiled[truth == k]) if h and (tiled[truth == k] == h).sum() > 5]
        assert len(hits) == 1, f"object {k} found as {len(hits)} instances"
        best = np.bincount(untiled[truth == k]).argmax()
        assert best and _iou(tiled == hits[0], untiled == best) >= 0.9, f"object {k}"
    parallel = auto_objects(image, ClassicAutoSegmenter, tile_px=256, halo_px=halo, workers=2)
    np.testing.assert_array_equal(tiled, paint_objects(parallel, image.shape))  # deterministic


def test_seam_buffer_stitches_tiles_finishing_in_any_order_like_one_image():
    from napari_instseg.core.stitch import SeamBuffer, kept_objects, pack_kept, unpack_kept

    halo = 32
    image, _ = _large_scene(1, halo)
    tiles = tile_grid(image.shape, 256, halo)
    per_tile = [(t, ClassicAutoSegmenter()(image[t.slices])) for t in tiles]
    whole = paint_objects(stitch(per_tile), image.shape)
    order = np.random.default_rng(0).permutation(len(tiles))
    buffer = SeamBuffer(256, halo, {t.index_yx for t in tiles})
    done, out = set(), []
    for k in order:
        tile, objects = per_tile[k]
        done.add(tile.index_yx)
        out += buffer.add(kept_objects(tile, objects, image.shape), done)
        buffer = SeamBuffer(256, halo, {t.index_yx for t in tiles}, unpack_kept(pack_kept(buffer.pending)))  # saved
    assert not buffer.pending
    np.testing.assert_array_equal(paint_objects(out, image.shape), whole)
