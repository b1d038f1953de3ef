"""The classical nuclei detector behind point prompts (no model weights needed).

Used by the demo to place point prompts and by batch pre-labelling as ``--detect``. It is the
classic automatic mode (:mod:`~napari_instseg.core.prompting.auto_classic`: the image's kind
and nucleus size measured on the image, local thresholds, distance-transform watershed), and
is named as a classical pipeline wherever its output is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.prompting.auto_classic import ClassicAutoSettings, classic_auto_labels

__all__ = ["NucleiDetection", "detect_nuclei"]


@dataclass(frozen=True)
class NucleiDetection:
    """Detected nuclei.

    Attributes
    ----------
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        Watershed instance labels, 1..n, 0 = background.
    centroids_yx : numpy.ndarray of float64, shape (n, 2)
        Centroid (y, x) of label i + 1 in row i.
    """

    labels_yx: NDArray[np.uint32]
    centroids_yx: NDArray[np.float64]


def detect_nuclei(
    image: NDArray[np.generic], *, min_area_px: int | None = None, settings: ClassicAutoSettings | None = None
) -> NucleiDetection:
    """Detect nuclei in a fluorescence or bright-field image (grey or colour).

    Parameters
    ----------
    image : numpy.ndarray, shape (height, width) or (height, width, 3|4)
        Fluorescence (nuclei bright) or bright-field (nuclei dark, hematoxylin when in
        colour); the kind is decided from the image unless ``settings.mode`` says.
    min_area_px : int, optional
        Objects smaller than this are dropped as well (the classic mode already drops those
        far under its measured nucleus size).
    settings : ClassicAutoSettings, optional
        Settings of the classic automatic mode; by default its own, except that objects under
        a quarter of a nucleus (specks, which that mode keeps with a low score) are no prompts.

    Returns
    -------
    NucleiDetection

    Raises
    ------
    ValueError
        For an image that is neither grey nor RGB(A).
    """
    from skimage import measure, segmentation

    labels = classic_auto_labels(image, settings or ClassicAutoSettings(min_area_fraction=0.25)).labels_yx
    if min_area_px is not None:
        areas = np.bincount(labels.ravel())
        labels = np.where(areas[labels] < min_area_px, 0, labels)
        labels = np.asarray(segmentation.relabel_sequential(labels)[0], dtype=np.uint32)
    props = measure.regionprops(labels)
    centroids = np.array([p.centroid for p in props], dtype=np.float64).reshape(-1, 2)
    return NucleiDetection(labels_yx=labels, centroids_yx=centroids)
