"""``napari-instseg export LABELS -o OUT``: a label image (+ instance table), a store, or a
folder ``import`` wrote, to COCO JSON or QuPath GeoJSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_instseg.commands.auto import positive_int

__all__ = ["is_geojson_path", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``export`` command."""
    from napari_instseg.cli import OVERWRITE_HELP

    export = subparsers.add_parser("export", help="export a label image (+ instance table) or a store to COCO JSON")
    export.add_argument(
        "labels",
        help="label image (.tif, .tiff or .npy; 2-D, 0 = background), STORE.zarr, or a folder 'import' wrote",
    )
    export.add_argument(
        "-o", "--output", required=True, help="COCO .json file, or .geojson for QuPath GeoJSON (never an input)"
    )
    export.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    export.add_argument("--table", help="instance table CSV with an 'id' column")
    export.add_argument(
        "--protocol", help="protocol JSON / YAML (taxonomy, occlusion rule); default: an import folder's protocol.json"
    )
    export.add_argument("--image", help="the image the labels annotate (name and size go into COCO)")
    export.add_argument("--format", choices=("rle", "polygon"), default="rle", help="segmentation form (default: rle)")
    export.add_argument(
        "--per-tile", type=positive_int, metavar="SIZE", help="for a slide store: one COCO image per SIZE-px tile"
    )
    export.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.errors import LabelImageError
    from napari_instseg.core.io import read_image, read_labels, read_table_csv
    from napari_instseg.core.paths import check_output_file
    from napari_instseg.core.protocol import AnnotationProtocol, load_protocol

    check_output_file(
        args.output,
        inputs=(args.labels, args.table, args.protocol, args.image),
        suffixes=(".json", ".geojson"),
        overwrite=args.overwrite,
        what="-o",
    )
    if Path(args.labels).is_dir():  # a store or an import folder (the store module is heavy)
        from napari_instseg.core.store import is_store

        return _export_store(args) if is_store(args.labels) else _export_import_folder(args)
    if args.per_tile:
        raise LabelImageError(f"--per-tile applies to a slide store (STORE.zarr); {args.labels} is a label image.")
    protocol = load_protocol(args.protocol) if args.protocol else AnnotationProtocol.default()
    labels = read_labels(args.labels)
    table = read_table_csv(args.table, protocol) if args.table else None
    file_name = Path(args.labels).name
    if args.image:
        image = read_image(args.image)
        if tuple(image.shape[:2]) != labels.shape:
            raise LabelImageError(
                f"{args.labels} has shape (y, x) {labels.shape}, but image {args.image} is {image.shape[:2]}."
            )
        file_name = Path(args.image).name
    if is_geojson_path(args.output):
        return _write_geojson(labels, table, protocol, args.output)
    exported = export_coco([AnnotatedImage(labels, table, file_name)], protocol, segmentation=args.format)
    save_coco(exported.coco, args.output)
    print(f"wrote {args.output}: {exported.summary}")
    return 0


def _export_import_folder(args: argparse.Namespace) -> int:
    from napari_instseg.core.coco import save_coco
    from napari_instseg.core.coco._folder import export_import_folder, is_import_folder
    from napari_instseg.core.errors import CocoFormatError
    from napari_instseg.core.geojson_folder import is_geojson_folder
    from napari_instseg.core.protocol import load_protocol

    if is_geojson_folder(args.labels):
        return _export_geojson_folder(args)
    if is_geojson_path(args.output):
        raise CocoFormatError(f"{args.labels}: GeoJSON export of a COCO import folder is not supported; write .json.")
    if not is_import_folder(args.labels):
        raise CocoFormatError(
            f"{args.labels} is a folder but neither an annotation store nor a folder written by "
            "'napari-instseg import' (no coco_source.json)."
        )
    protocol = load_protocol(args.protocol) if args.protocol else None
    exported = export_import_folder(args.labels, protocol, segmentation=args.format)
    save_coco(exported.coco, args.output)
    print(f"wrote {args.output}: {exported.summary}{_rle_note(exported.coco, args.format)}")
    return 0


def _rle_note(coco: dict[str, Any], segmentation: str) -> str:
    """In polygon mode, which annotations are RLE all the same (crowds; masks with holes)."""
    if segmentation != "polygon":
        return ""
    rle = [a for a in coco["annotations"] if isinstance(a["segmentation"], dict)]
    crowd = [a["id"] for a in rle if a.get("iscrowd")]
    other = [a["id"] for a in rle if not a.get("iscrowd")]
    if not rle:
        return ""

    def ids(values: list[Any]) -> str:
        return ", ".join(map(str, values[:10])) + (f" and {len(values) - 10} more" if len(values) > 10 else "")

    parts = [f"{len(crowd)} crowd ({ids(crowd)})"] if crowd else []
    parts += [f"{len(other)} other ({ids(other)}: holes, or RLE as they came in)"] if other else []
    return "\nRLE annotation id(s), not polygons: " + "; ".join(parts)


def _export_geojson_folder(args: argparse.Namespace) -> int:
    from napari_instseg.core.geojson import GeoJSONError, save_geojson
    from napari_instseg.core.geojson_folder import export_geojson_folder
    from napari_instseg.core.protocol import load_protocol

    if not is_geojson_path(args.output):
        raise GeoJSONError(f"{args.labels} was imported from GeoJSON: write it back to a .geojson file.")
    protocol = load_protocol(args.protocol) if args.protocol else None
    document = export_geojson_folder(args.labels, protocol)
    save_geojson(document, args.output)
    features = document if isinstance(document, list) else document["features"]
    print(f"wrote {args.output}: {len(features)} features (QuPath GeoJSON, level-0 pixels)")
    return 0


def is_geojson_path(path: str) -> bool:
    """True when ``path`` names a GeoJSON file (``.geojson``, ``.geo.json``; any case)."""
    return path.lower().endswith((".geojson", ".geo.json"))


def _write_geojson(labels: Any, table: Any, protocol: Any, output: str) -> int:
    from napari_instseg.core.geojson import labels_to_geojson, save_geojson

    collection = labels_to_geojson(labels, table, protocol)
    save_geojson(collection, output)
    print(f"wrote {output}: {len(collection['features'])} features (QuPath GeoJSON, level-0 pixels)")
    return 0


def _export_store(args: argparse.Namespace) -> int:
    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.store import AnnotationStore

    store = AnnotationStore.open(args.labels, read_only=True)
    if is_geojson_path(args.output):
        return _write_geojson(store.read_labels(), store.table, store.protocol, args.output)
    if args.per_tile:
        return _export_tiles(store, args)
    image: dict[str, Any] = dict(store.image)
    file_name = str(image.pop("file_name", None) or f"{Path(args.labels).stem}.tif")
    extra = {k: v for k, v in image.items() if k not in ("id", "height", "width")}
    prelabels = store.read_side("prelabel")
    scores = {i: r.score for i, r in prelabels.items() if r is not None and r.score == r.score}  # NaN: none
    labels, amodal = store.read_labels(), store.read_side("amodal")
    item = AnnotatedImage(labels, store.table, file_name, image.get("id"), extra, amodal=amodal, scores=scores)
    exported = export_coco([item], store.protocol, segmentation=args.format)
    save_coco(exported.coco, args.output)
    print(f"wrote {args.output}: {exported.summary}")
    return 0


def _export_tiles(store: Any, args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.coords import tile_origin_record
    from napari_instseg.core.slide import tile_grid

    shape = tuple(store._labels.shape)
    slide_name = store.image.get("slide") or store.image.get("file_name") or Path(args.labels).stem
    items = []
    table = store.table
    seen: set[int] = set()
    for window in tile_grid(shape, args.per_tile):
        labels = store.read_labels(window.tile_yx)
        if not labels.any():
            continue
        y0, x0 = window.tile_yx[:2]
        present = {int(i) for i in np.unique(labels)} - {0}
        seen |= present
        items.append(
            AnnotatedImage(
                labels,
                table[table.index.isin(present)],  # rows of other tiles are not "without pixels"
                f"{Path(str(slide_name)).stem}_y{y0}_x{x0}.tif",
                metadata={"slide": str(slide_name), "level": 0, **tile_origin_record((y0, x0))},
            )
        )
    exported = export_coco(items, store.protocol, segmentation=args.format)
    save_coco(exported.coco, args.output)
    no_pixels = int((~table.index.isin(list(seen))).sum())  # rows with no pixel in any tile
    summary = dataclasses.replace(exported.summary, n_rows_without_pixels=no_pixels)
    print(f"wrote {args.output}: {summary} (tiles of {args.per_tile} px; tile_origin is [y, x] at level 0)")
    return 0
