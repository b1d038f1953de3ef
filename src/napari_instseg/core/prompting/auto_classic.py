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
   their darker cores part), and redrawn each at its own level, 30 % of the way from its
   surroundings to its core (pale and dark nuclei of one image each get the outline of their
   own contrast). Bright-field objects that are still clumps (solidity under 0.93: nuclei are
   nearly convex) are cut along the straight line between two of their concave points
   (notches at least 0.25 ``r`` and 3 px deep, cut at most 3 ``r`` long) that most raises the
   solidity of the parts, again on each part; the parts are redrawn at their own level.
5. *Score* per object in [0, 1]: its solidity times its contrast to the surrounding ring,
   lowered for objects under a quarter of a disc of radius ``r``, so well-formed,
   well-stained nuclei rank first (pre-labels are reviewed best first, and ``qa`` computes
   AP from this ranking).

Every default was chosen on a calibration set of real annotated images and checked on a
held-out one (``tests/core/test_auto_classic.py``, ``tests/data/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["ClassicAutoResult", "ClassicAutoSettings", "classic_auto_labels", "image_kind"]

_MODES = ("auto", "fluorescence", "brightfield")
_FULL_SCORE_AREA = 0.25  # objects under this fraction of a disc of radius r rank lower
_BRIGHTFIELD_OUTLINE_SIGMA = 0.5  # px; smoothing of the bright-field signal for the outlines
_OUTLINE_LEVEL = 0.3  # a bright-field nucleus ends where its signal falls to 30 % above its ring
_OUTLINE_GROWTH = 0.3  # radii: how far a refined outline may move past the first one
_OUTLINE_CORE_PERCENTILE = 75.0  # the object's own level: this percentile of its signal
_TREE_LEVELS = 40  # bright-field component tree: threshold levels over each image's objects
_TREE_CORE_AREA = 0.02  # a core (a component at some level) counts from this fraction of a disc r
_TREE_CORE_DEPTH = 0.05  # ... when its peak rises this share of its object's range above the level
_TREE_PIECE_AREA = 0.25  # a split never leaves a piece under this fraction of a disc r
_TREE_MIN_GAIN = 0.02  # a cut's pieces must fit ellipses at least this much better than the whole
_TREE_MAX_ELONGATION = 4.0  # objects longer than this (major / minor axis) are not cut
_CLUMP_SOLIDITY = 0.93  # a bright-field object less convex than this may be a clump of nuclei
_CONCAVITY_DEPTH = 0.25  # radii: a concave point lies this far inside the convex hull ...
_CONCAVITY_MIN_PX = 3.0  # ... and at least this many pixels (deeper than the outline's own noise)
_CUT_MAX_LENGTH = 3.0  # radii: the longest cut
_CUT_MIN_PART = 0.1  # a cut leaves parts of at least this fraction of a disc of radius r
_CUT_GAIN = 0.03  # a cut must raise the (area-weighted) solidity by this much
_CUT_MAX_LEVELS = 4  # recursive cuts per object: at most 2**4 parts


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
        those under a quarter of it are kept with a lower score (specks and micronuclei are
        annotated in real data, but rank after well-formed nuclei).
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
        labels = _tree_split(labels, smooth, radius)
        labels = _refined_outlines(labels, outline, radius, settings.min_area_fraction)
        labels, cut_ids = _split_clumps(labels, radius)
        if cut_ids.size:  # the parts of a clump each at its own level
            labels = _refined_outlines(labels, outline, radius, settings.min_area_fraction, only_ids=cut_ids)
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
    """Solidity times contrast (mean inside minus mean of a 2-px ring), per id, in [0, 1]."""
    from scipy import ndimage
    from skimage import measure

    out: dict[int, float] = {}
    for region in measure.regionprops(labels):
        y0, x0, y1, x1 = region.bbox
        y0, x0 = max(y0 - 3, 0), max(x0 - 3, 0)
        y1, x1 = min(y1 + 3, labels.shape[0]), min(x1 + 3, labels.shape[1])
        inside = labels[y0:y1, x0:x1] == region.label
        ring = ndimage.binary_dilation(inside, iterations=2) & (labels[y0:y1, x0:x1] == 0)
        crop = smooth[y0:y1, x0:x1]
        contrast = float(crop[inside].mean() - crop[ring].mean()) if ring.any() else float(crop[inside].mean())
        size = min(region.area / (_FULL_SCORE_AREA * np.pi * radius**2), 1.0)
        out[int(region.label)] = float(np.clip(size * region.solidity * np.clip(2 * contrast, 0.0, 1.0), 0.0, 1.0))
    return out


def _refined_outlines(
    labels: NDArray[np.uint32],
    signal: NDArray[np.float64],
    radius: float,
    min_fraction: float,
    only_ids: NDArray[np.integer] | None = None,
) -> NDArray[np.uint32]:
    """Each bright-field object redrawn at its own level between its ring and its core.

    Every object may grow by ``_OUTLINE_GROWTH`` radii (never into a neighbour's share) or
    shrink: it keeps the pixels of its share above ``ring + _OUTLINE_LEVEL * (core - ring)``,
    its core being its ``_OUTLINE_CORE_PERCENTILE`` percentile and its ring the median of its
    surroundings (up to one radius away, farther than ``0.3 r`` from every object). Pale and
    dark nuclei of one image each get the outline of their own contrast. Given ``only_ids``,
    the other objects are kept as they are. Ids 1..n again.
    """
    from scipy import ndimage
    from skimage import measure, segmentation

    share = segmentation.expand_labels(labels, max(_OUTLINE_GROWTH * radius, 1.0))
    surroundings = segmentation.expand_labels(labels, max(radius, 3.0))
    far = ~ndimage.binary_dilation(labels > 0, iterations=max(int(0.3 * radius), 2))
    refined = np.zeros_like(labels)
    if only_ids is not None:
        kept_as_is = (labels > 0) & ~np.isin(labels, only_ids)
        refined[kept_as_is] = labels[kept_as_is]
    pad = int(radius) + 2
    for region in measure.regionprops(labels):
        if only_ids is not None and region.label not in only_ids:
            continue
        y0, x0, y1, x1 = region.bbox
        window = (slice(max(y0 - pad, 0), y1 + pad), slice(max(x0 - pad, 0), x1 + pad))
        crop = signal[window]
        own = labels[window] == region.label
        ring = (surroundings[window] == region.label) & far[window]
        ring_level = float(np.median(crop[ring])) if ring.sum() > 5 else float(np.percentile(crop, 10))
        core_level = float(np.percentile(crop[own], _OUTLINE_CORE_PERCENTILE))
        level = ring_level + _OUTLINE_LEVEL * (core_level - ring_level)
        kept = ndimage.binary_fill_holes(ndimage.binary_opening((share[window] == region.label) & (crop > level)))
        parts, n = ndimage.label(kept)
        if n > 1:  # the part that overlaps the object most
            counts = np.bincount(parts[own], minlength=n + 1)
            counts[0] = 0
            kept = parts == counts.argmax()
        refined[window][kept] = region.label
    min_area = max(int(min_fraction * np.pi * radius**2), 4)
    refined[np.bincount(refined.ravel())[refined] < min_area] = 0
    relabelled, _, _ = segmentation.relabel_sequential(refined)
    return np.asarray(relabelled, dtype=np.uint32)


def _ellipse_fit(labels: NDArray[np.integer], n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Area and fit to an ellipse (IoU with the ellipse of its own second moments) of ids 0..n.

    Vectorised over all ids (id 0, the background, included and meaningless): the moments come
    from ``bincount``, and a pixel lies inside its object's ellipse where its Mahalanobis
    distance to the centroid is at most 2 (a uniform ellipse's edge).
    """
    flat = labels.ravel()
    index = np.flatnonzero(flat)
    ids = flat[index]
    y, x = np.divmod(index, labels.shape[1])
    area = np.bincount(ids, minlength=n + 1).astype(np.float64)
    count = np.maximum(area, 1.0)
    dy = y - (np.bincount(ids, y, n + 1) / count)[ids]
    dx = x - (np.bincount(ids, x, n + 1) / count)[ids]
    syy = np.bincount(ids, dy * dy, n + 1) / count + 1 / 12  # + a pixel's own extent
    sxx = np.bincount(ids, dx * dx, n + 1) / count + 1 / 12
    sxy = np.bincount(ids, dx * dy, n + 1) / count
    det = np.maximum(syy * sxx - sxy**2, 1e-9)
    mahalanobis = (sxx[ids] * dy * dy - 2 * sxy[ids] * dx * dy + syy[ids] * dx * dx) / det[ids]
    inside = np.bincount(ids, mahalanobis <= 4.0, n + 1)
    ellipse = 4 * np.pi * np.sqrt(det)
    return area, inside / np.maximum(area + ellipse - inside, 1.0)


def _elongation(labels: NDArray[np.integer], n: int) -> NDArray[np.float64]:
    """Major over minor axis (of the moment ellipse) of ids 0..n."""
    flat = labels.ravel()
    index = np.flatnonzero(flat)
    ids = flat[index]
    y, x = np.divmod(index, labels.shape[1])
    count = np.maximum(np.bincount(ids, minlength=n + 1), 1).astype(np.float64)
    dy = y - (np.bincount(ids, y, n + 1) / count)[ids]
    dx = x - (np.bincount(ids, x, n + 1) / count)[ids]
    syy = np.bincount(ids, dy * dy, n + 1) / count + 1 / 12
    sxx = np.bincount(ids, dx * dx, n + 1) / count + 1 / 12
    sxy = np.bincount(ids, dx * dy, n + 1) / count
    half = np.sqrt(((syy - sxx) / 2) ** 2 + sxy**2)
    major, minor = (syy + sxx) / 2 + half, np.maximum((syy + sxx) / 2 - half, 1e-9)
    return np.asarray(np.sqrt(major / minor), dtype=np.float64)


def _owners(parts: NDArray[np.integer], n: int, labels: NDArray[np.uint32]) -> NDArray[np.int64]:
    """The object of ``labels`` each part 1..n lies in (read at one pixel of it; 0 for id 0)."""
    flat = parts.ravel()
    index = np.flatnonzero(flat)
    first = np.zeros(n + 1, dtype=np.int64)
    first[flat[index][::-1]] = index[::-1]  # repeated assignments keep the last: the first pixel
    owners = labels.ravel()[first].astype(np.int64)
    owners[0] = 0
    return owners


def _tree_split(labels: NDArray[np.uint32], signal: NDArray[np.float64], radius: float) -> NDArray[np.uint32]:
    """Split bright-field objects where the component tree of their signal shows several nuclei.

    The signal inside the objects is thresholded at ``_TREE_LEVELS`` levels; the components at
    each level form a tree by containment. At every level, an object holding two or more cores
    (components of at least ``_TREE_CORE_AREA`` of a disc of radius ``r``, peaking at least
    ``_TREE_CORE_DEPTH`` of the object's range above the level) is cut by a watershed of the
    signal from those cores, and the cut is scored by how well its pieces fit ellipses
    (area-weighted IoU with their moment ellipses). Each object takes the cut of the level
    whose pieces fit best, when they fit at least ``_TREE_MIN_GAIN`` better than the whole
    object, none is under ``_TREE_PIECE_AREA`` of a disc and the object is not longer than
    ``_TREE_MAX_ELONGATION``: touching nuclei part where their darker cores part, while a
    nucleus whose chromatin breaks into blobs stays whole (its pieces fit ellipses no better
    than it does). Ids 1..n again.
    """
    from scipy import ndimage
    from skimage import segmentation

    n_objects = int(labels.max())
    if n_objects == 0:
        return labels
    disc = np.pi * radius**2
    _, whole_fit = _ellipse_fit(labels, n_objects)
    elongation = _elongation(labels, n_objects)
    inner = (labels > 0) & ~segmentation.find_boundaries(labels, mode="inner")
    values = signal[inner]
    if values.size == 0:
        return labels
    ids = np.arange(1, n_objects + 1)
    contrast = np.zeros(n_objects + 1)  # each object's own range of signal
    contrast[1:] = np.asarray(ndimage.maximum(signal, labels, ids)) - np.asarray(ndimage.minimum(signal, labels, ids))
    best = np.zeros(n_objects + 1)  # fit gained by the best cut so far, per object
    cut = labels.astype(np.int64)  # each object's best cut, ids unique over all levels
    next_id = n_objects + 1
    for level in np.linspace(np.percentile(values, 5), np.percentile(values, 99), _TREE_LEVELS):
        cores, n = ndimage.label((signal > level) & inner)
        if n < 2:
            continue
        owners = _owners(cores, n, labels)
        area = np.bincount(cores.ravel(), minlength=n + 1)
        deep = np.zeros(n + 1, dtype=bool)  # its peak rises _TREE_CORE_DEPTH of its object's range
        deep[cores[signal >= level + _TREE_CORE_DEPTH * contrast[labels]]] = True
        kept = (area >= _TREE_CORE_AREA * disc) & deep & (owners > 0)
        several = np.bincount(owners[kept], minlength=n_objects + 1) >= 2
        kept &= several[owners]
        if not kept.any():
            continue
        pieces = segmentation.watershed(-signal, np.where(kept[cores], cores, 0), mask=several[labels])
        piece_area, piece_fit = _ellipse_fit(pieces, n)
        real = kept & (piece_area > 0)
        weighted = np.bincount(owners[real], (piece_area * piece_fit)[real], minlength=n_objects + 1)
        fit = weighted / np.maximum(np.bincount(owners[real], piece_area[real], minlength=n_objects + 1), 1.0)
        small = np.zeros(n_objects + 1, dtype=bool)
        small[owners[real & (piece_area < _TREE_PIECE_AREA * disc)]] = True
        gain = np.where(several & ~small & (elongation <= _TREE_MAX_ELONGATION), fit - whole_fit, -1.0)
        better = (gain > best) & (gain > _TREE_MIN_GAIN)
        if not better.any():
            continue
        best[better] = gain[better]
        where = better[labels] & (pieces > 0)
        cut[where] = pieces[where] + next_id
        next_id += n + 1
    relabelled, _, _ = segmentation.relabel_sequential(cut)
    return np.asarray(relabelled, dtype=np.uint32)
def _outline(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Pixels of ``mask`` with a 4-neighbour outside it (``mask`` has an empty border)."""
    inner = mask.copy()
    inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return np.asarray(mask & ~inner, dtype=bool)


def _solidity(mask: NDArray[np.bool_]) -> float:
    """Pixel count over the pixel count of the convex hull (1 for a convex shape).

    The hull's pixels are counted from the hull polygon of the outline's pixel centres by Pick's
    theorem (area + half the perimeter + 1): close to the count of
    ``skimage.morphology.convex_hull_image``, in a fraction of its time.
    """
    from scipy import spatial

    points_yx = np.argwhere(_outline(mask)).astype(np.float64)
    if len(points_yx) < 3 or np.linalg.matrix_rank(points_yx - points_yx.mean(axis=0)) < 2:
        return 1.0  # a line of pixels: no hull to compare with
    hull = spatial.ConvexHull(points_yx)
    return float(min(mask.sum() / (hull.volume + hull.area / 2 + 1), 1.0))


def _concave_points(mask: NDArray[np.bool_], radius: float) -> list[tuple[int, int, float]]:
    """Deepest point (y, x, depth px) of every notch between ``mask`` and its convex hull.

    A notch counts when it reaches ``_CONCAVITY_DEPTH`` radii (and ``_CONCAVITY_MIN_PX``) inside
    the hull; the point lies in the notch, just outside the object.
    """
    from scipy import ndimage
    from skimage import morphology

    hull = morphology.convex_hull_image(mask)
    depth = ndimage.distance_transform_edt(hull)
    notches, _ = ndimage.label(hull & ~mask)
    min_depth = max(_CONCAVITY_DEPTH * radius, _CONCAVITY_MIN_PX)
    points = []
    for index, box in enumerate(ndimage.find_objects(notches), start=1):
        if box is None:
            continue
        notch_depth = np.where(notches[box] == index, depth[box], 0.0)
        y, x = np.unravel_index(int(np.argmax(notch_depth)), notch_depth.shape)
        if notch_depth[y, x] >= min_depth:
            points.append((int(y + box[0].start), int(x + box[1].start), float(notch_depth[y, x])))
    return points


def _parts_solidity(parts: list[NDArray[np.bool_]]) -> float:
    """Area-weighted mean solidity of ``parts``."""
    areas = np.asarray([part.sum() for part in parts], dtype=np.float64)
    return float(np.sum(areas * np.asarray([_solidity(part) for part in parts])) / areas.sum())


def _best_cut(mask: NDArray[np.bool_], radius: float) -> tuple[NDArray[np.bool_], NDArray[np.bool_]] | None:
    """The straight cut between two concave points that most raises the solidity, or None.

    A cut is at most ``_CUT_MAX_LENGTH`` radii long, leaves two parts of ``_CUT_MIN_PART``
    discs or more, and must raise the area-weighted solidity of the parts by ``_CUT_GAIN``.
    """
    from scipy import ndimage
    from skimage import draw, segmentation

    area = int(mask.sum())
    solidity = _solidity(mask)
    if solidity >= _CLUMP_SOLIDITY:
        return None
    points = _concave_points(mask, radius)
    best_score, best_parts = solidity + _CUT_GAIN, None
    for i, start in enumerate(points):
        for end in points[i + 1 :]:
            length = float(np.hypot(start[0] - end[0], start[1] - end[1]))
            if length > _CUT_MAX_LENGTH * radius:
                continue
            cut = mask.copy()
            cut[draw.line(start[0], start[1], end[0], end[1])] = False
            parts, n = ndimage.label(cut)
            if n < 2:
                continue
            sizes = np.bincount(parts.ravel())[1:]
            first, second = np.argsort(sizes)[::-1][:2] + 1
            if (
                sizes[second - 1] < _CUT_MIN_PART * np.pi * radius**2
                or sizes.sum() - sizes[[first - 1, second - 1]].sum() > 0.05 * area
            ):
                continue  # a sliver, or more than two parts
            score = _parts_solidity([parts == first, parts == second])
            if score > best_score:
                best_score, best_parts = score, np.where(parts == first, 1, 0) + np.where(parts == second, 2, 0)
    if best_parts is None:
        return None
    halves = segmentation.expand_labels(best_parts, 2) * mask  # the cut line goes to its nearer part
    return halves == 1, halves == 2


def _cut_recursively(mask: NDArray[np.bool_], radius: float, level: int = 0) -> list[NDArray[np.bool_]]:
    """``mask`` cut into nuclei by :func:`_best_cut`, again on each half, ``_CUT_MAX_LEVELS`` deep."""
    halves = None if level >= _CUT_MAX_LEVELS else _best_cut(mask, radius)
    if halves is None:
        return [mask]
    return [part for half in halves for part in _cut_recursively(half, radius, level + 1)]


def _split_clumps(labels: NDArray[np.uint32], radius: float) -> tuple[NDArray[np.uint32], NDArray[np.int64]]:
    """Bright-field objects that are clumps of nuclei, cut between their concave points.

    Nuclei are nearly convex: an object with solidity under ``_CLUMP_SOLIDITY`` is cut
    (recursively, :func:`_best_cut`) along the straight line between two concave points of its
    outline that most raises the area-weighted solidity of its parts.

    Parameters
    ----------
    labels : numpy.ndarray of uint32, shape (height, width)
        Objects (0 = background).
    radius : float
        Nucleus radius in pixels.

    Returns
    -------
    labels : numpy.ndarray of uint32, shape (height, width)
        Ids 1..n again.
    cut_ids : numpy.ndarray of int64
        Ids of the parts of the objects that were cut.
    """
    from skimage import measure

    if not labels.any():
        return labels, np.zeros(0, dtype=np.int64)
    out = np.zeros_like(labels)
    next_id = 1
    cut_ids: list[int] = []
    for region in measure.regionprops(labels):
        y0, x0, y1, x1 = region.bbox
        padded = np.pad(region.image, 2)
        parts = _cut_recursively(padded, radius)
        for part in parts:
            out[y0:y1, x0:x1][part[2:-2, 2:-2]] = next_id
            if len(parts) > 1:
                cut_ids.append(next_id)
            next_id += 1
    return out, np.asarray(cut_ids, dtype=np.int64)
