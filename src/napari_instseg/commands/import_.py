"""``napari-instseg import FILE -o DIR``: a COCO JSON or QuPath GeoJSON file into label
images and CSV tables (nothing lost)."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_instseg.commands.export import is_geojson_path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``import`` command."""
    imp = subparsers.add_parser(
        "import", help="import a COCO JSON or QuPath GeoJSON file into label images and CSV tables (nothing lost)"
    )
    imp.add_argument("coco", metavar="FILE", help="COCO instances JSON, or QuPath GeoJSON (.geojson)")
    imp.add_argument(
        "-o", "--outdir", required=True, help="folder for <stem>_labels.tif, <stem>_instances.csv, protocol.json"
    )
    imp.add_argument("--overwrite", action="store_true", help="replace those files when the folder holds them")
    size = imp.add_mutually_exclusive_group()
    size.add_argument("--image", help="GeoJSON: the image (or slide) the objects lie on; gives size and name")
    size.add_argument("--shape", nargs=2, type=int, metavar=("H", "W"), help="GeoJSON: label image height and width")
    imp.add_argument("--protocol", help="GeoJSON: protocol mapping class names (default: built from the file)")
    imp.set_defaults(func=_cmd_import)


def _cmd_import(args: argparse.Namespace) -> int:
    if is_geojson_path(args.coco) or (args.image or args.shape):
        return _import_geojson(args)
    from napari_instseg.core.coco import import_coco
    from napari_instseg.core.coco._folder import SOURCE_NAME, image_stems, write_import_folder
    from napari_instseg.core.paths import check_output_dir

    check_output_dir(args.outdir, inputs=(args.coco,), targets=("protocol.json",), overwrite=True, what="-o")
    imported = import_coco(args.coco)  # validates and decodes everything before writing
    stems = image_stems(imported, args.coco)
    targets = [f"{stem}{suffix}" for stem in stems for suffix in ("_labels.tif", "_instances.csv", "_overlaps.csv")]
    check_output_dir(
        args.outdir,
        inputs=(args.coco,),
        targets=[*targets, "protocol.json", SOURCE_NAME],
        overwrite=args.overwrite,
        what="-o",
    )
    write_import_folder(imported, args.outdir, source=str(Path(args.coco).absolute()))
    n_instances = sum(len(im.table) for im in imported.images)
    n_losing = sum(int((im.overlap_report()["lost_px"] > 0).sum()) for im in imported.images)
    print(
        f"wrote {len(imported.images)} image(s), {n_instances} instances to {args.outdir}; "
        f"{imported.overlap_px} overlapping pixel(s): {n_losing} instance(s) are partly covered in the label "
        f"image (front: larger z_order, then smaller area, then smaller id); every own mask is kept whole in "
        f"coco_source.json, per instance in <stem>_overlaps.csv"
    )
    return 0


def _import_geojson(args: argparse.Namespace) -> int:
    from napari_instseg.core.errors import InstsegError
    from napari_instseg.core.geojson import import_geojson, load_geojson
    from napari_instseg.core.geojson_folder import SOURCE_NAME as GEOJSON_SOURCE_NAME
    from napari_instseg.core.geojson_folder import overlap_report, write_geojson_folder
    from napari_instseg.core.paths import check_output_dir
    from napari_instseg.core.protocol import load_protocol

    if args.shape:
        shape_yx = (int(args.shape[0]), int(args.shape[1]))
        stem = Path(args.coco).name.split(".")[0]
    elif args.image:
        shape_yx = _image_shape_yx(args.image)
        stem = Path(args.image).name.split(".")[0]
    else:
        raise InstsegError(f"{args.coco}: GeoJSON has no image size; give --image IMAGE or --shape H W.")
    if min(shape_yx) <= 0:
        raise InstsegError(f"--shape must be two positive integers (height width), got {shape_yx}.")
    targets = [f"{stem}{suffix}" for suffix in ("_labels.tif", "_instances.csv", "_overlaps.csv")]
    check_output_dir(
        args.outdir,
        inputs=(args.coco, args.image, args.protocol),
        targets=[*targets, "protocol.json", GEOJSON_SOURCE_NAME],
        overwrite=args.overwrite,
        what="-o",
    )
    protocol = load_protocol(args.protocol) if args.protocol else None
    imported = import_geojson(load_geojson(args.coco), shape_yx, protocol, source=args.coco)
    write_geojson_folder(imported, args.outdir, stem, source=str(Path(args.coco).absolute()))
    report = overlap_report(imported)
    print(
        f"wrote {len(imported.table)} instance(s) and {len(imported.passthrough)} other feature(s) (points, lines; "
        f"kept as they came) to {args.outdir}; {int((report['lost_px'] > 0).sum())} instance(s) partly covered "
        f"(front: larger z_order, then smaller area, then smaller id); classes: "
        f"{', '.join(c.name for c in imported.protocol.categories)}"
    )
    return 0


def _image_shape_yx(path: str) -> tuple[int, int]:
    """(height, width) of an image or slide (level 0), reading metadata only where possible."""
    from napari_instseg.core.slide import TIFF_SUFFIXES, open_slide

    if Path(path).is_dir() or path.lower().endswith(TIFF_SUFFIXES):
        return open_slide(path).shape_yx
    from napari_instseg.core.io import read_image

    shape = read_image(path).shape
    return int(shape[0]), int(shape[1])
