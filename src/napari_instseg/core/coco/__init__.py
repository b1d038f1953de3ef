"""COCO instances files: export, import and validation.

What we write is standard COCO (``images``, ``categories``, ``annotations`` with RLE or polygon
``segmentation``, ``area``, ``bbox``, ``iscrowd``) that ``pycocotools.coco.COCO`` and
``COCOeval`` read unchanged, plus our per-annotation fields (``instance_id``, ``occlusion``,
``occluded_fraction``, ``z_order``, ``attributes``) and the protocol in ``info``. Rejected
instances (no pixels) are listed under the top-level ``instseg_rejected`` key, which
pycocotools ignores.
"""

from napari_instseg.core.coco._export import (
    AnnotatedImage,
    CocoExport,
    ExportSummary,
    export_coco,
    save_coco,
)
from napari_instseg.core.coco._fields import REJECTED_KEY
from napari_instseg.core.coco._import import CocoImport, ImportedImage, import_coco, load_coco_json
from napari_instseg.core.coco._validate import validate_coco

__all__ = [
    "REJECTED_KEY",
    "AnnotatedImage",
    "CocoExport",
    "CocoImport",
    "ExportSummary",
    "ImportedImage",
    "export_coco",
    "import_coco",
    "load_coco_json",
    "save_coco",
    "validate_coco",
]
