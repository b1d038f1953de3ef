"""A simple classical nuclei detector for H-DAB / H&E tiles (no model weights needed).

Used by the demo to place point prompts and by batch pre-labelling as ``--detect``. It is a
classical pipeline (colour deconvolution, Otsu threshold, distance-transform watershed) and is
named as such wherever its output is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

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


def detect_nuclei(image: NDArray[np.generic], *, min_area_px: int = 30, min_distance_px: int = 5) -> NucleiDetection:
    """Detect nuclei in an RGB (hematoxylin-stained) or grey image.

    Parameters
    ----------
    image : numpy.ndarray, shape (height, width, 3) or (height, width)
        RGB brightfield (nuclei dark, hematoxylin) or grey fluorescence (nuclei bright).
    min_area_px : int
        Smaller objects are dropped.
    min_distance_px : int
        Minimum distance between two seeds of the watershed.
    """
    from scipy import ndimage
    from skimage import color, feature, filters, measure, morphology, segmentation

    if image.ndim == 3 and image.shape[-1] in (3, 4):
        signal = color.rgb2hed(image[..., :3])[..., 0]  # hematoxylin optical density
    elif image.ndim == 2:
        signal = image.astype(np.float64)
    else:
        raise ValueError(f"Expected an RGB (y, x, 3) or grey (y, x) image, got shape {image.shape}.")
    signal = filters.gaussian(signal, sigma=1.0)
    foreground = signal > filters.threshold_otsu(signal)
    foreground = morphology.remove_small_objects(
        ndimage.binary_opening(foreground, iterations=1), max_size=min_area_px - 1
    )
    distance = ndimage.distance_transform_edt(foreground)
    peaks = feature.peak_local_max(distance, min_distance=min_distance_px, labels=measure.label(foreground))
    markers = np.zeros(foreground.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = segmentation.watershed(-distance, markers, mask=foreground)
    labels = morphology.remove_small_objects(labels, max_size=min_area_px - 1)
    labels, _, _ = segmentation.relabel_sequential(labels)
    props = measure.regionprops(labels)
    centroids = np.array([p.centroid for p in props], dtype=np.float64).reshape(-1, 2)
    return NucleiDetection(labels_yx=labels.astype(np.uint32), centroids_yx=centroids)
