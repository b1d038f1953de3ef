# mypy: disable-error-code="no-untyped-call"
"""Classic automatic mode: every nucleus of an image without model weights (offline).

A classical pipeline from scikit-image and scipy that decides everything it can from the image
itself (its kind of stain, its nucleus size), never from a fixed nucleus size:

1. *Kind and signal*: an RGB(A) image whose channels are equal is grey. A grey image is
   fluorescence (nuclei bright) when its background (its median) is dark, else bright-field
   (nuclei dark, inverted). A colour image is bright-field (H&E, H-DAB; stained tissue may
   fill it) unless it is mostly black (a fluorescence composite: its brightest channel); its
   signal is the hematoxylin optical density from colour deconvolution (``rgb2hed``). The
   signal is scaled to [0, 1] between its 0.5 / 99.5 percentiles and smoothed (sigma 1 px).
2. *Scale*: a first global threshold gives blobs; the nucleus radius ``r`` is the median of
   their largest inscribed-disc radii, after dropping the fragments smaller than half the
   radius-weighted median (so neither specks of texture nor clumps of touching nuclei set it).
3. *Foreground*: fluorescence keeps pixels above a local (adaptive) threshold over ``5 r``
   windows and above a fraction of the global Otsu level, so dim nuclei next to bright ones
   are kept; bright-field takes Li's minimum-cross-entropy threshold (robust to the stroma's
   weak hematoxylin), adds pale nuclei that stand out of their ``8 r`` neighbourhood and
   removes what lies below the mean of its ``12 r`` neighbourhood (the gaps between packed
   nuclei), all on the signal smoothed at 0.5 px only (so thin gaps survive). Holes are
   filled; objects under 5 % of a disc of radius ``r`` are dropped.
4. *Split touching nuclei*: marker watershed on the distance transform smoothed at a fraction
   of ``r``; the markers are its h-maxima of depth a fraction of ``r``. Bright-field objects
   are then split again where the component tree of their hematoxylin signal (its connected
   components over 40 threshold levels, nested by containment) shows several cores whose
   watershed pieces fit ellipses better than the whole object (touching nuclei part where
   their darker cores part); touching pieces whose Laplacian-of-Gaussian blob response peaks
   on their contact (pieces of one nucleus, which has one centre) are joined again; each object
   is redrawn at its own level, 30 % of the way from its surroundings to its core (pale and
   dark nuclei of one image each get the outline of their own contrast), moving out by up to
   ``0.3 r`` but in by at most ``0.1 r`` (what lies below that level inside a nucleus is mostly
   pale nucleoplasm, not background).
5. *Score* per object in [0, 1], how much it looks like a nucleus, measured on the image: its
   contrast to its free surrounding ring times its solidity, its fit to the ellipse of its own
   second moments, the free share of that ring (not taken by other objects, to the fourth
   power: pieces of a cut touch their neighbours along the cut) and a size ramp
   up to a disc of radius ``r``, so well-formed, well-stained, isolated nuclei rank first and
   fragments of texture, pieces of cuts and pale blobs last (pre-labels are reviewed best
   first, and ``qa`` computes AP from this ranking).

Every default was chosen on a calibration set of real annotated images (four DSB 2018 H&E /
bright-field images plus five TCGA H&E crops outside this repository, for want of a licence)
and checked on a held-out one (``tests/core/test_auto_classic.py``, ``tests/data/README.md``,
``docs/classic_auto.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.prompting._clumps import ellipse_fit, tree_split
from napari_instseg.core.prompting._contours import redraw_outlines
from napari_instseg.core.prompting._voting import blob_merge

__all__ = ["ClassicAutoResult", "ClassicAutoSettings", "classic_auto_labels", "image_kind"]

_MODES = ("auto", "fluorescence", "brightfield")
_FULL_SCORE_AREA = 1.0  # objects under this many discs of radius r rank lower (in proportion)
_FREE_RING_POWER = 4.0  # the score falls as this power of the free share of an object's ring
_BRIGHTFIELD_OUTLINE_SIGMA = 0.5  # px; smoothing of the bright-field signal for the outlines


@dataclass(frozen=True)
class ClassicAutoSettings:
    """Parameters of the classic automatic mode (defaults measured on real nuclei).

    Attributes
    ----------
    mode : {'auto', 'fluorescence', 'brightfield'}
        ``auto`` decides from the image (see :func:`image_kind`).
    radius_px : float or None
        Nucleus radius in pixels; None measures it on the image.
    min_area_fraction : float
        Objects smaller than this fraction of a disc of radius ``radius_px`` are dropped;
        those under a whole disc are kept with a score lowered in proportion (specks and
        micronuclei are annotated in real data, but rank after well-formed nuclei).
    split_depth : float or None
        Depth of the watershed markers (h-maxima of the distance transform), in radii; lower
        splits more. None: 0.06 for fluorescence, 0.1 for bright-field.
    split_smoothing : float
        Smoothing of the distance transform before its maxima are taken, in radii.
    """

    mode: str = "auto"
    radius_px: float | None = None
    min_area_fraction: float = 0.05
    split_depth: float | None = None
    split_smoothing: float = 0.15


@dataclass(frozen=True)
class ClassicAutoResult:
    """Labels (uint32, 0 = background, ids 1..n), a score per id, the radius (px) and the kind
    (``'fluorescence'`` or ``'brightfield'``) used."""

    labels_yx: NDArray[np.uint32]
    scores: dict[int, float]
    radius_px: float
    mode: str


def _validated(image: NDArray[np.generic], mode: str) -> NDArray[np.float64]:
    array = np.asarray(image)
    if mode not in _MODES:
        raise ValueError(f"mode must be 'auto', 'fluorescence' or 'brightfield', got {mode!r}.")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise ValueError(f"Expected a grey (y, x) or RGB (y, x, 3|4) image, got shape {array.shape}.")
    return array.astype(np.float64)[..., :3] if array.ndim == 3 else array.astype(np.float64)


def _is_grey(rgb: NDArray[np.float64]) -> bool:
    """RGB whose channels are equal (up to 2 % of the image's range): a grey image stored as RGB."""
    spread = float(np.ptp(rgb)) or 1.0
    return float(np.mean(np.ptp(rgb, axis=-1))) <= 0.02 * spread


def _background_is_dark(grey: NDArray[np.float64]) -> bool:
    """The median (the background of a nuclei image) lies in the lower half of the range."""
    low, high = np.percentile(grey, (1.0, 99.0))
    return bool(np.median(grey) < (low + high) / 2)


def image_kind(image: NDArray[np.generic]) -> str:
    """``'fluorescence'`` (nuclei bright on dark) or ``'brightfield'`` (nuclei dark on bright).

    Parameters
    ----------
    image : numpy.ndarray, shape (height, width) or (height, width, 3|4)

    Returns
    -------
    str
        Decided from the image: a grey image (or RGB with equal channels) is fluorescence when
        its median (its background) lies in the lower half of its range; a colour image is
        bright-field (stained tissue may fill it) unless its median is under a quarter of its
        bright end (a fluorescence composite on black).

    Raises
    ------
    ValueError
        For an image that is neither grey nor RGB(A).
    """
    array = _validated(image, "auto")
    if array.ndim == 2 or _is_grey(array):
        grey = array.mean(axis=-1) if array.ndim == 3 else array
        return "fluorescence" if _background_is_dark(grey) else "brightfield"
    luminance = array.mean(axis=-1)  # stained tissue can fill a colour image: dark only when black
    return "fluorescence" if np.median(luminance) < 0.25 * np.percentile(luminance, 99.5) else "brightfield"


def _signal(image: NDArray[np.generic], mode: str) -> tuple[NDArray[np.float64], str]:
    """Nuclei signal in [0, 1] (nuclei high) and the kind used."""
    from skimage import color

    array = _validated(image, mode)
    if array.ndim == 3 and _is_grey(array):
        array = array.mean(axis=-1)
    kind = image_kind(array) if mode == "auto" else mode
    if array.ndim == 3 and kind == "brightfield":  # hematoxylin optical density
        signal = color.rgb2hed(np.asarray(image)[..., :3])[..., 0]
    elif array.ndim == 3:  # a fluorescence composite: its brightest channel
        signal = array.max(axis=-1)
    else:
        signal = -array if kind == "brightfield" else array
    low, high = np.percentile(signal, (0.5, 99.5))
    return np.clip((signal - low) / max(float(high - low), 1e-9), 0.0, 1.0), kind


def _radius(foreground: NDArray[np.bool_]) -> float:
    """Median inscribed-disc radius of the blobs, fragments left out (3 px when none)."""
    from scipy import ndimage

    parts, n = ndimage.label(foreground)
    if n == 0:
        return 3.0
    distance = ndimage.distance_transform_edt(foreground)
    radii = np.asarray(ndimage.maximum(distance, parts, np.arange(1, n + 1)), dtype=np.float64)
    radii = np.sort(radii[radii >= 1.5])
    if radii.size == 0:
        return 3.0
    cumulative = np.cumsum(radii)  # radius-weighted median: clumps and specks balance
    weighted = radii[np.searchsorted(cumulative, cumulative[-1] / 2)]
    return float(np.median(radii[radii >= weighted / 2]))


def _first_foreground(smooth: NDArray[np.float64], kind: str) -> NDArray[np.bool_]:
    from scipy import ndimage
    from skimage import filters

    if np.ptp(smooth) <= 1e-6:
        return np.zeros(smooth.shape, dtype=bool)
    threshold = filters.threshold_otsu if kind == "fluorescence" else filters.threshold_li
    return np.asarray(ndimage.binary_opening(smooth > threshold(smooth)), dtype=bool)


def _foreground(smooth: NDArray[np.float64], kind: str, radius: float, min_fraction: float) -> NDArray[np.bool_]:
    from scipy import ndimage
    from skimage import filters, morphology

    if np.ptp(smooth) <= 1e-6:
        return np.zeros(smooth.shape, dtype=bool)
    if kind == "fluorescence":
        level = filters.threshold_otsu(smooth)
        local = filters.threshold_local(smooth, int(5 * radius) | 1)
        foreground = (smooth > 0.7 * level) & (smooth > local)
    else:
        level = filters.threshold_li(smooth)
        pale = (smooth > filters.threshold_local(smooth, int(8 * radius) | 1)) & (smooth > 0.6 * level)
        gaps = smooth <= filters.threshold_local(smooth, int(12 * radius) | 1)  # between packed nuclei
        foreground = ((smooth > level) | pale) & ~gaps
    foreground = ndimage.binary_fill_holes(ndimage.binary_opening(foreground, iterations=1))
    min_area = max(int(min_fraction * np.pi * radius**2), 4)
    return np.asarray(morphology.remove_small_objects(foreground, max_size=min_area - 1), dtype=bool)


def classic_auto_labels(image: NDArray[np.generic], settings: ClassicAutoSettings | None = None) -> ClassicAutoResult:
    """Segment every nucleus of ``image`` (fluorescence or bright-field, grey or colour).

    Parameters
    ----------
    image : numpy.ndarray, shape (height, width) or (height, width, 3|4)
        Fluorescence (nuclei bright on dark) or bright-field (nuclei dark on bright,
        hematoxylin-stained when in colour); an RGB(A) image with equal channels is grey.
    settings : ClassicAutoSettings, optional

    Returns
    -------
    ClassicAutoResult

    Raises
    ------
    ValueError
        For an image that is neither grey nor RGB(A), or an unknown mode.
    """
    from skimage import filters

    settings = settings or ClassicAutoSettings()
    raw, kind = _signal(image, settings.mode)
    smooth = filters.gaussian(raw, 1.0)
    if settings.radius_px is not None:
        radius = float(settings.radius_px)
    else:
        radius = _radius(_first_foreground(smooth, kind))
    # bright-field outlines from a lighter smoothing: the thin pale gaps between packed nuclei stay
    outline = smooth if kind == "fluorescence" else filters.gaussian(raw, _BRIGHTFIELD_OUTLINE_SIGMA)
    foreground = _foreground(outline, kind, radius, settings.min_area_fraction)
    labels = _split(foreground, radius, settings, kind)
    if kind == "brightfield":
        labels = blob_merge(tree_split(labels, smooth, radius), smooth, radius)
        labels = redraw_outlines(labels, outline, radius, settings.min_area_fraction)
    return ClassicAutoResult(labels, _scores(labels, smooth, radius), radius, kind)


def _split(
    foreground: NDArray[np.bool_], radius: float, settings: ClassicAutoSettings, kind: str
) -> NDArray[np.uint32]:
    """Marker watershed of the foreground into nuclei (ids 1..n)."""
    from scipy import ndimage
    from skimage import filters, morphology, segmentation

    if not foreground.any():
        return np.zeros(foreground.shape, dtype=np.uint32)
    fluorescence = kind == "fluorescence"
    depth = settings.split_depth if settings.split_depth is not None else (0.06 if fluorescence else 0.1)
    smoothing = settings.split_smoothing
    distance = ndimage.distance_transform_edt(foreground)
    landscape = filters.gaussian(distance, max(smoothing * radius, 1.0))
    markers, _ = ndimage.label(morphology.h_maxima(landscape, depth * radius))
    labels = segmentation.watershed(-landscape, markers, mask=foreground)
    min_area = max(int(settings.min_area_fraction * np.pi * radius**2), 4)
    areas = np.bincount(labels.ravel())
    labels[areas[labels] < min_area] = 0
    labels, _, _ = segmentation.relabel_sequential(labels)
    return np.asarray(labels, dtype=np.uint32)


def _scores(labels: NDArray[np.uint32], smooth: NDArray[np.float64], radius: float) -> dict[int, float]:
    """Score per id in [0, 1]: how much each object looks like a nucleus, measured on the image.

    The product of its contrast (twice its mean inside minus the mean of its free 2-px ring,
    clipped to [0, 1]), its solidity, its fit to the ellipse of its own second moments (IoU),
    the free share of its ring (the share not taken by other objects) to the power
    ``_FREE_RING_POWER`` and a size ramp (full from ``_FULL_SCORE_AREA`` discs of radius ``r``):
    fragments of texture, pieces of cuts and pale blobs packed among other objects rank after
    well-formed, well-stained, isolated nuclei.
    """
    from scipy import ndimage
    from skimage import measure

    n_ids = int(labels.max())
    _, fit = ellipse_fit(labels, n_ids)
    full_area = _FULL_SCORE_AREA * np.pi * radius**2
    out: dict[int, float] = {}
    for region in measure.regionprops(labels):
        y0, x0, y1, x1 = region.bbox
        y0, x0 = max(y0 - 3, 0), max(x0 - 3, 0)
        y1, x1 = min(y1 + 3, labels.shape[0]), min(x1 + 3, labels.shape[1])
        inside = labels[y0:y1, x0:x1] == region.label
        around = ndimage.binary_dilation(inside, iterations=2) & ~inside
        ring = around & (labels[y0:y1, x0:x1] == 0)
        crop = smooth[y0:y1, x0:x1]
        contrast = float(crop[inside].mean() - crop[ring].mean()) if ring.any() else float(crop[inside].mean())
        isolation = (float(ring.sum()) / max(float(around.sum()), 1.0)) ** _FREE_RING_POWER
        size = min(region.area / full_area, 1.0)
        shape = region.solidity * float(fit[region.label])
        likeness = size * shape * float(np.clip(2 * contrast, 0.0, 1.0)) * isolation
        out[int(region.label)] = float(np.clip(likeness, 0.0, 1.0))
    return out
