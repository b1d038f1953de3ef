"""napari readers: COCO instances JSON, annotation stores (``*.zarr``) and slide pyramids
(tiled TIFF / SVS / OME-TIFF / NDPI, OME-Zarr, plain zarr) -> layers.

:func:`get_reader` claims exactly the paths these readers open and returns None for every other
one, without raising: TIFF and zarr are recognised from their metadata (no pixel is read),
JSON by parsing it (a COCO file is an object with ``images`` and ``annotations`` lists,
wherever they sit in the file; QuPath GeoJSON is a FeatureCollection or an array of Features).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["get_reader"]

LayerData = tuple[Any, dict[str, Any], str]
Reader = Callable[[str | list[str]], list[LayerData]]


def get_reader(path: str | list[str]) -> Reader | None:
    """The reader for ``path``, or None when none of ours opens it.

    A folder: an annotation store, or a zarr slide (OME-Zarr multiscales, a zarr array or a
    group of levels ``0``, ``1``...). A file: a TIFF that :func:`~napari_instseg.core.slide.open_slide`
    reads as a slide (tiled, pyramidal, SVS / OME / NDPI; a plain strip TIFF is left to
    napari's own reader), or a JSON file holding a COCO instances object.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    path = str(path)
    if os.path.isdir(path):
        from napari_instseg.core.store import is_store

        if is_store(path):
            return read_store
        return read_slide if _is_zarr_slide(Path(path)) else None
    if not os.path.isfile(path):
        return None
    from napari_instseg.core.slide import TIFF_SUFFIXES

    lower = path.lower()
    if lower.endswith(TIFF_SUFFIXES):
        return read_slide if _is_tiff_slide(path) else None
    if lower.endswith((".json", ".geojson")):
        return _json_reader(path, geojson_suffix=lower.endswith(".geojson"))
    return None


_UNPARSED = object()
_PEEK_BYTES = 64 * 1024


def _json_reader(path: str, *, geojson_suffix: bool) -> Reader | None:
    """The COCO or GeoJSON reader for a JSON file, by parsing it.

    A file that parses claims a reader when it is a COCO object (``images`` / ``annotations``
    at the top) or GeoJSON features. A file that does not parse (invalid, nested too deeply,
    not UTF-8) is claimed only when it shows itself as ours (a ``.geojson`` suffix, or COCO /
    GeoJSON keys in its first 64 KiB): the reader then raises the clear error of the import;
    every other file gets None.
    """
    from napari_instseg.core.geojson import is_geojson_document

    parsed = _parse_json(path)
    if parsed is _UNPARSED:
        head = _head(path)
        if geojson_suffix:
            return read_geojson
        if b'"images"' in head or b'"annotations"' in head:
            return read_coco
        return read_geojson if b'"FeatureCollection"' in head or b'"features"' in head else None
    if _is_coco(parsed):
        return lambda p: _read_coco_dict(p, parsed)
    if is_geojson_document(parsed):
        return lambda p: read_geojson(p, parsed)
    return None


def _parse_json(path: str) -> Any:
    """The parsed JSON document, or ``_UNPARSED`` when the file cannot be read as JSON."""
    try:
        with open(path, "rb") as handle:
            return json.load(handle)
    except (OSError, ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        return _UNPARSED


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(_PEEK_BYTES)
    except OSError:
        return b""


def _is_coco(document: Any) -> bool:
    """A JSON object with COCO's ``images`` and ``annotations`` (a malformed one is claimed too:
    its import gives the clear error)."""
    return isinstance(document, dict) and "annotations" in document and "images" in document


def _is_tiff_slide(path: str) -> bool:
    """True for a TIFF that is tiled or a pyramid (SVS, OME, NDPI...): metadata only."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            page = series.pages[0]
            pyramid = len(series.levels) > 1 or tif.is_svs or tif.is_ome or tif.is_ndpi
            tiled = bool(getattr(page, "is_tiled", False))
            axes_ok = set(series.axes) <= set("YXSC") and len(series.shape) in (2, 3)
            return (pyramid or tiled) and axes_ok
    except Exception:  # any file tifffile cannot parse is not ours: never raise in a reader
        return False


def _is_zarr_slide(path: Path) -> bool:
    """True for a zarr folder open_slide reads (peeks at its metadata, never at pixels)."""
    meta = _zarr_meta(path)
    if meta is None:
        return False
    attrs = meta.get("attributes", meta)
    if "multiscales" in attrs or "multiscales" in (attrs.get("ome") or {}):
        return True
    if meta.get("node_type") == "array" or (path / ".zarray").is_file():
        return True
    level0 = _zarr_meta(path / "0")
    return level0 is not None and (level0.get("node_type") == "array" or (path / "0" / ".zarray").is_file())


def _zarr_meta(path: Path) -> dict[str, Any] | None:
    """The attributes / metadata of a zarr v3 or v2 node folder, or None when it is none."""
    for name in ("zarr.json", ".zattrs", ".zarray", ".zgroup"):
        meta = path / name
        if meta.is_file():
            try:
                loaded = json.loads(meta.read_text())
            except (OSError, ValueError):
                return None
            return loaded if isinstance(loaded, dict) else None
    return None


def read_slide(path: str | list[str]) -> list[LayerData]:
    """A slide pyramid as a lazy multiscale image layer (no level is read whole)."""
    from napari_instseg.core.slide import open_slide

    path = path[0] if isinstance(path, list) else path
    slide = open_slide(path)
    metadata = {"instseg_slide": {"source": slide.source, "mpp": slide.mpp, "shape_yx": list(slide.shape_yx)}}
    kwargs = {"name": Path(path).name.split(".")[0], "multiscale": True, "rgb": slide.rgb, "metadata": metadata}
    return [(slide.napari_levels(), kwargs, "image")]


def read_coco(path: str | list[str]) -> list[LayerData]:
    """Read a COCO file: per image, the image (when found beside the JSON) and its labels."""
    path = path[0] if isinstance(path, list) else path
    return _read_coco_dict(path, None)


def _read_coco_dict(path: str | list[str], document: Any) -> list[LayerData]:
    """:func:`read_coco` of an already parsed document (None: parse ``path``)."""
    from napari_instseg._adapters import labels_layer_kwargs, rgb_or_grey
    from napari_instseg.core.coco import import_coco
    from napari_instseg.core.io import read_image

    path = path[0] if isinstance(path, list) else path
    folder = Path(path).parent
    imported = import_coco(document, source=path) if document is not None else import_coco(path)
    layers: list[LayerData] = []
    for item in imported.images:
        file_name = str(item.image.get("file_name", ""))
        stem = Path(file_name).stem or f"image {item.image['id']}"
        image_path = folder / file_name
        if file_name and image_path.is_file():
            image = read_image(image_path)
            layers.append((image, {"name": stem, **rgb_or_grey(image)}, "image"))
        kwargs = labels_layer_kwargs(f"{stem} labels", item.table, imported.protocol, item.image)
        layers.append((item.labels_yx, kwargs, "labels"))
    return layers


def read_geojson(path: str | list[str], document: Any = None) -> list[LayerData]:
    """QuPath GeoJSON as a Labels layer (area objects, own masks composited, with their table)
    and a Points layer (Point / MultiPoint objects), placed in level-0 pixels.

    The image size comes from an image or slide beside the file with the same stem, else from
    the image or slide open in the current viewer, else from the objects' extent. Only the
    region around the objects is rasterised; the layer's ``translate`` puts it in place.
    """
    from napari_instseg._adapters import labels_layer_kwargs
    from napari_instseg.core.geojson import area_bbox_yx, features_of, import_geojson, load_geojson

    path = path[0] if isinstance(path, list) else path
    document = load_geojson(path) if document is None else document
    features, _container = features_of(document, path)
    bbox = area_bbox_yx(features, path)
    shape_yx = _image_shape_beside(Path(path)) or _open_image_shape() or (bbox[2:] if bbox else (1, 1))
    y0, x0, y1, x1 = bbox or (0, 0, 1, 1)
    y0, x0 = min(max(y0, 0), shape_yx[0] - 1), min(max(x0, 0), shape_yx[1] - 1)
    y1, x1 = max(min(y1, shape_yx[0]), y0 + 1), max(min(x1, shape_yx[1]), x0 + 1)
    imported = import_geojson(features_of(document, path)[0], (y1 - y0, x1 - x0), origin_yx=(y0, x0), source=path)
    stem = Path(path).name.split(".")[0]
    kwargs = labels_layer_kwargs(f"{stem} objects", imported.table, imported.protocol)
    kwargs["translate"] = (y0, x0)
    kwargs["metadata"]["instseg_geojson"] = {"source": str(path), "origin_yx": [y0, x0], "shape_yx": list(shape_yx)}
    layers: list[LayerData] = [(imported.labels_yx, kwargs, "labels")]
    points_yx, properties = imported.points_yx()
    if len(points_yx):
        import pandas as pd

        table = pd.DataFrame(
            {"name": [str(p.get("name", "")) for p in properties], "class": [p["class"] for p in properties]}
        )
        layers.append((points_yx, {"name": f"{stem} points", "features": table, "size": 12}, "points"))
    return layers


def _image_shape_beside(path: Path) -> tuple[int, int] | None:
    """Level-0 (height, width) of an image or slide named like the GeoJSON file, if one lies beside it."""
    stem = path.name.split(".")[0]
    for candidate in sorted(path.parent.glob(f"{stem}.*")):
        if candidate == path or candidate.name.lower().endswith((".json", ".geojson", ".csv")):
            continue
        try:
            if candidate.is_dir() or _is_tiff_slide(str(candidate)):
                from napari_instseg.core.slide import open_slide

                return open_slide(candidate).shape_yx
            from napari_instseg.core.io import read_image

            shape = read_image(candidate).shape
            return int(shape[0]), int(shape[1])
        except Exception:  # not an image we read: look further
            continue
    return None


def _open_image_shape() -> tuple[int, int] | None:
    """Level-0 (height, width) of the first image layer of the current napari viewer, if any."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # no napari / no viewer: the objects' extent is used
        return None
    if viewer is None:
        return None
    for layer in viewer.layers:
        if type(layer).__name__ != "Image":
            continue
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        return int(data.shape[0]), int(data.shape[1])
    return None


def read_store(path: str | list[str]) -> list[LayerData]:
    """Read an annotation store: its labels with the instance table as features (and the image
    when it lies beside the store). Opening the layer's session saves to the store again."""
    from napari_instseg._adapters import STORE_KEY, labels_layer_kwargs, rgb_or_grey
    from napari_instseg.core.io import read_image
    from napari_instseg.core.store import AnnotationStore

    path = path[0] if isinstance(path, list) else path
    store = AnnotationStore.open(path, read_only=True)
    layers: list[LayerData] = []
    file_name = str(store.image.get("file_name", ""))
    image_path = Path(path).parent / file_name
    if file_name and image_path.is_file():
        image = read_image(image_path)
        layers.append((image, {"name": Path(file_name).stem, **rgb_or_grey(image)}, "image"))
    kwargs = labels_layer_kwargs(f"{Path(path).stem} labels", store.table, store.protocol, store.image)
    kwargs["metadata"][STORE_KEY] = str(Path(path).resolve())
    layers.append((store.read_labels(), kwargs, "labels"))
    return layers
