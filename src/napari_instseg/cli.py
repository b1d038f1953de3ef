"""The ``napari-instseg`` command.

Sub-commands import what they need when they run, so ``--help`` stays fast and imports
neither torch nor Qt.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from napari_instseg import __version__

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-instseg",
        description="Instance-segmentation annotation: COCO export / import, demo and more.",
    )
    parser.add_argument("--version", action="version", version=f"napari-instseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the headless demo on the bundled IHC tile")
    demo.add_argument("-o", "--outdir", default="demo-output", help="output folder (default: %(default)s)")
    demo.set_defaults(func=_cmd_demo)

    export = sub.add_parser("export", help="export a label image (+ instance table) to COCO JSON")
    export.add_argument("labels", help="label image: .tif, .tiff or .npy (2-D, 0 = background)")
    export.add_argument("-o", "--output", required=True, help="COCO JSON file to write")
    export.add_argument("--table", help="instance table CSV with an 'id' column")
    export.add_argument("--protocol", help="protocol JSON / YAML (taxonomy, occlusion rule)")
    export.add_argument("--image", help="the image the labels annotate (name and size go into COCO)")
    export.add_argument("--format", choices=("rle", "polygon"), default="rle", help="segmentation form (default: rle)")
    export.set_defaults(func=_cmd_export)

    imp = sub.add_parser("import", help="import a COCO JSON file into label images and CSV tables")
    imp.add_argument("coco", help="COCO instances JSON file")
    imp.add_argument("-o", "--outdir", required=True, help="folder for <stem>_labels.tif and <stem>_instances.csv")
    imp.set_defaults(func=_cmd_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from napari_instseg.core.errors import InstsegError

    try:
        return int(args.func(args) or 0)
    except (InstsegError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"napari-instseg {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from napari_instseg.demo import run_demo

    result = run_demo(args.outdir)
    print(result.summary)
    print(f"done in {result.seconds:.1f} s")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.errors import LabelImageError
    from napari_instseg.core.io import read_image, read_labels, read_table_csv
    from napari_instseg.core.protocol import Protocol, load_protocol

    protocol = load_protocol(args.protocol) if args.protocol else Protocol.default()
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
    exported = export_coco([AnnotatedImage(labels, table, file_name)], protocol, segmentation=args.format)
    save_coco(exported.coco, args.output)
    print(f"wrote {args.output}: {exported.summary}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_instseg.core.coco import import_coco
    from napari_instseg.core.errors import CocoFormatError
    from napari_instseg.core.io import write_labels_tiff, write_table_csv

    imported = import_coco(args.coco)  # validates and decodes everything before writing
    stems = [Path(im.image["file_name"]).stem for im in imported.images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise CocoFormatError(f"{args.coco}: several images share the file stem(s) {clashes}; outputs would collide.")
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for stem, item in tqdm(list(zip(stems, imported.images)), desc="writing", unit="image", disable=None):
        write_labels_tiff(outdir / f"{stem}_labels.tif", item.labels_yx)
        write_table_csv(outdir / f"{stem}_instances.csv", item.table)
    imported.protocol.save(outdir / "protocol.json")
    n_instances = sum(len(im.table) for im in imported.images)
    print(
        f"wrote {len(imported.images)} image(s), {n_instances} instances to {outdir}; "
        f"{imported.overlap_px} overlapping pixel(s) resolved by z_order, then area"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
