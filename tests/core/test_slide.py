"""Opening slides lazily: OME-Zarr (0.4), plain zarr, OME-TIFF pyramids, arrays; tile grid."""

import numpy as np
import pytest
import tifffile
import zarr

from napari_instseg.core.slide import SlideError, open_slide, tile_grid, window_at

SIDE = 20_000


def _write_ome_zarr(path, side=SIDE, levels=3, chunk=1024):
    """A (c, y, x) OME-Zarr 0.4-style pyramid; content is a cheap pattern (compressible)."""
    root = zarr.open_group(str(path), mode="w")
    datasets = []
    for level in range(levels):
        size = side // 2**level
        array = root.create_array(
            str(level), shape=(3, size, size), dtype=np.uint8, chunks=(3, chunk, chunk), fill_value=200
        )
        array[:, :chunk, :chunk] = 10 * (level + 1)  # one chunk written per level
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.25 * 2**level, 0.25 * 2**level]}],
            }
        )
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "datasets": datasets,
            "axes": [
                {"name": "c", "type": "channel"},
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
            ],
        }
    ]
    return path


def test_ome_zarr_pyramid_opens_lazily_with_mpp(tmp_path):
    slide = open_slide(_write_ome_zarr(tmp_path / "s.ome.zarr"))
    assert slide.shape_yx == (SIDE, SIDE) and slide.axes == "cyx" and slide.mpp == 0.25 and slide.rgb
    assert [slide.level_shape_yx(i) for i in range(3)] == [(20000, 20000), (10000, 10000), (5000, 5000)]
    assert slide.downsample(2) == 4.0
    region = slide.read_region((5000, 5000, 5100, 5300))
    assert region.shape == (100, 300, 3) and (region == 200).all()
    assert (slide.read_region((0, 0, 4, 4), level=1) == 20).all()
    napari_levels = slide.napari_levels()
    assert napari_levels[0].shape == (SIDE, SIDE, 3)  # lazy (dask), nothing read


def test_plain_zarr_levels_and_arrays(tmp_path):
    root = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    for level, size in enumerate((512, 256)):
        root.create_array(str(level), shape=(size, size), dtype=np.uint16, chunks=(128, 128))
    slide = open_slide(tmp_path / "plain.zarr")
    assert slide.axes == "yx" and len(slide.levels) == 2 and slide.mpp is None
    single = zarr.create_array(str(tmp_path / "one.zarr"), shape=(64, 80, 3), dtype=np.uint8)
    assert open_slide(tmp_path / "one.zarr").axes == "yxc"
    in_memory = open_slide(np.zeros((30, 40), np.uint8))
    assert in_memory.shape_yx == (30, 40) and in_memory.source == "<array>"
    del single


def test_ome_tiff_pyramid(tmp_path):
    path = tmp_path / "s.ome.tif"
    data = np.full((4096, 4096, 3), 180, np.uint8)
    data[:16, :16] = 7
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        options = {"tile": (256, 256), "photometric": "rgb", "compression": "zlib"}
        tif.write(data, subifds=2, metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}, **options)
        tif.write(data[::2, ::2], subfiletype=1, **options)
        tif.write(data[::4, ::4], subfiletype=1, **options)
    slide = open_slide(path)
    assert slide.axes == "yxc" and slide.mpp == 0.5 and len(slide.levels) == 3
    assert slide.level_shape_yx(2) == (1024, 1024)
    assert (slide.read_region((0, 0, 8, 8)) == 7).all() and (slide.read_region((100, 100, 110, 110)) == 180).all()


def test_bad_paths_are_named(tmp_path):
    with pytest.raises(SlideError, match="does not exist"):
        open_slide(tmp_path / "missing.ome.zarr")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SlideError, match="not a zarr folder or a TIFF"):
        open_slide(tmp_path / "notes.txt")


def test_tile_grid_and_windows_cover_the_slide_with_halo():
    windows = list(tile_grid((1000, 700), tile_px=512, halo_px=64))
    assert len(windows) == 4
    assert windows[0].tile_yx == (0, 0, 512, 512) and windows[0].region_yx == (0, 0, 576, 576)
    assert windows[3].tile_yx == (512, 512, 1000, 700) and windows[3].region_yx == (448, 448, 1000, 700)
    covered = np.zeros((1000, 700), int)
    for w in windows:
        y0, x0, y1, x1 = w.tile_yx
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all()
    assert window_at((1000, 700), (600, 100), 512, 64).tile_yx == (512, 0, 1000, 512)
