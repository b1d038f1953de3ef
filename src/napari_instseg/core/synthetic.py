"""Synthetic overlapping cells with known amodal and visible masks (sample data and tests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from napari_instseg.core.instances import make_rows
from napari_instseg.core.occlusion import composite_by_depth, occluded_fractions
from napari_instseg.core.protocol import AnnotationProtocol, Category

__all__ = ["SyntheticCells", "overlapping_cells", "synthetic_protocol"]


@dataclass(frozen=True)
class SyntheticCells:
    """An image of overlapping cells and its ground truth.

    Attributes
    ----------
    image_yx : numpy.ndarray of uint8, shape (height, width)
        Fluorescence-like grey image; overlaps are brighter, nearer cells have a dark rim.
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        Visible instance labels (front instance owns overlaps).
    amodal_masks : numpy.ndarray of bool, shape (n, height, width)
        Full outline of every instance, aligned with ``table.index``.
    table : DataFrame
        Instance table with ``z_order``, ``occluded_fraction`` and the derived ``occlusion``.
    protocol : AnnotationProtocol
        Amodal-rule protocol with the two synthetic categories.
    """

    image_yx: NDArray[np.uint8]
    labels_yx: NDArray[np.uint32]
    amodal_masks: NDArray[np.bool_]
    table: pd.DataFrame
    protocol: AnnotationProtocol


def synthetic_protocol() -> AnnotationProtocol:
    """The amodal protocol of the synthetic sample: round and elongated cells."""
    return AnnotationProtocol(
        categories=(
            Category(1, "round cell", "cell", "#1f77b4"),
            Category(2, "elongated cell", "cell", "#d62728"),
        ),
        occlusion_rule="amodal",
        name="synthetic overlapping cells",
    )


def overlapping_cells(shape_yx: tuple[int, int] = (256, 256), n_cells: int = 14, seed: int = 0) -> SyntheticCells:
    """Draw ``n_cells`` elliptical cells that overlap, in a random front-to-back order.

    Parameters
    ----------
    shape_yx : (int, int)
        Image size (height, width) in pixels.
    n_cells : int
        Number of cells.
    seed : int
        Random seed; the same seed gives the same sample.
    """
    rng = np.random.default_rng(seed)
    height, width = shape_yx
    yy, xx = np.mgrid[0:height, 0:width]
    scale = min(height, width)
    masks, categories = [], []
    for _ in range(n_cells):
        elongated = bool(rng.random() < 0.4)
        ry = rng.uniform(0.06, 0.10) * scale
        rx = ry * (rng.uniform(1.6, 2.2) if elongated else rng.uniform(0.85, 1.15))
        cy, cx = rng.uniform(0.15, 0.85, size=2) * (height, width)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        masks.append((u / rx) ** 2 + (v / ry) ** 2 <= 1.0)
        categories.append(2 if elongated else 1)
    amodal = np.stack(masks)
    ids = np.arange(1, n_cells + 1)
    z_order = rng.permutation(n_cells)
    labels = composite_by_depth(amodal, ids, z_order)
    fraction = occluded_fractions(labels, amodal, ids)
    protocol = synthetic_protocol()
    table = make_rows(
        ids,
        category_id=categories,
        z_order=z_order.tolist(),
        occluded_fraction=fraction.tolist(),
        occlusion=protocol.tiers.tiers_of(fraction).tolist(),
        source="manual",
        annotator="synthetic",
    )
    image = _render(amodal, labels, rng)
    return SyntheticCells(image, labels, amodal, table, protocol)


def _render(amodal: NDArray[np.bool_], labels: NDArray[np.uint32], rng: np.random.Generator) -> NDArray[np.uint8]:
    from scipy import ndimage

    signal = 40.0 + 70.0 * amodal.sum(axis=0)  # overlaps are brighter
    boundaries = labels != ndimage.grey_erosion(labels, size=3)
    signal[boundaries & (labels > 0)] -= 45.0  # visible outlines show who is in front
    noisy = ndimage.gaussian_filter(signal, 1.0) + rng.normal(0, 6.0, labels.shape)
    result: NDArray[np.uint8] = np.clip(noisy, 0, 255).astype(np.uint8)
    return result
