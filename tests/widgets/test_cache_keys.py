"""The Prompt widget and ``prelabel-slide`` build the same embedding-cache key for the same
slide tile, so a tile pre-labelled in batch is instant in the widget (one cache, one key)."""

from types import SimpleNamespace

import numpy as np
import zarr

from napari_instseg.core.prompting.cache import EmbeddingCache, default_cache_path, slide_tile_key


def _slide(path, side=256):
    from skimage import data

    root = zarr.open_group(str(path), mode="w")
    root.create_array("0", data=np.ascontiguousarray(data.immunohistochemistry()[:side, :side]), chunks=(side, side, 3))
    return path


def test_widget_and_prelabel_slide_share_cache_entries(tmp_path, sam2_checkpoint, monkeypatch):
    from napari_instseg._widgets.prompt import PromptWidget
    from napari_instseg.cli import main

    monkeypatch.setenv("NAPARI_INSTSEG_CACHE", str(tmp_path / "cache"))
    slide = _slide(tmp_path / "slide.zarr")
    (tmp_path / "points.csv").write_text("y,x\n60,60\n")
    args = ["prelabel-slide", str(slide), "--store", str(tmp_path / "s.zarr"), "--points", str(tmp_path / "points.csv")]
    args += ["--backend", "sam2", "--checkpoint", str(sam2_checkpoint), "--device", "cpu"]
    args += ["--tile", "256", "--halo", "0", "--workers", "1"]
    assert main(args) == 0

    cache = EmbeddingCache(default_cache_path())
    assert cache.path == tmp_path / "cache" / "embeddings.zarr"  # the one cache both use
    region = (0, 0, 256, 256)
    # the widget as it sees a slide window: a multiscale layer opened from the slide's path
    layer = SimpleNamespace(name="slide", source=SimpleNamespace(path=str(slide)), multiscale=True, data=[None])
    widget_key = PromptWidget.image_key(None, layer, region)  # type: ignore[arg-type]
    assert widget_key == slide_tile_key(tmp_path / "." / "slide.zarr", region)  # any spelling of the path
    assert widget_key in cache  # the tile prelabel-slide embedded is a hit for the widget
