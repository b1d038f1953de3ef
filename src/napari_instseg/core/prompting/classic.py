"""Classical prompting backend: no model weights, works offline, named 'classic' everywhere.

Around the prompt (a box, or a window around the clicks) three classical segmentations are
run on a smoothed intensity image: a random walker and a marker watershed on the gradient,
both seeded with the positive clicks (or the box centre) as object and the window border,
the outside of the box and the negative clicks as background; and an Otsu threshold with the
polarity of the seed. Each candidate keeps the connected part that holds the seed. Their
scores are their mean IoU with the other candidates (consensus), so the best-agreed mask
comes first.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.prompting.base import Candidates, ImageKey, Prompt

__all__ = ["ClassicPrompter", "ClassicSettings"]


@dataclass(frozen=True)
class ClassicSettings:
    """Parameters of the classic backend.

    Attributes
    ----------
    window_px : int
        Half-size of the window around clicks when there is no box.
    margin_fraction : float
        The window around a box extends by this fraction of the box size on each side.
    smoothing_sigma_px : float
        Gaussian smoothing before segmentation.
    beta : float
        Random-walker edge weight.
    """

    window_px: int = 40
    margin_fraction: float = 0.25
    smoothing_sigma_px: float = 1.0
    beta: float = 130.0


class ClassicPrompter:
    """Random walker / watershed / threshold around point or box prompts."""

    name = "classic"

    def __init__(self, settings: ClassicSettings | None = None) -> None:
        self.settings = settings or ClassicSettings()
        self._signal: NDArray[np.float32] | None = None

    def set_image(self, image: NDArray[np.generic], key: ImageKey | None = None) -> None:
        """Keep one signal channel of ``image``, scaled to [0, 1].

        RGB is taken to be brightfield: its hematoxylin optical density (colour deconvolution)
        makes nuclei stand out, also inside DAB-brown tissue. Grey images are used as they are.
        """
        from skimage import color

        array = np.asarray(image)
        if array.ndim == 3 and array.shape[-1] in (3, 4):
            grey = color.rgb2hed(array[..., :3])[..., 0]
        elif array.ndim == 2:
            grey = array.astype(np.float64)
        else:
            raise ValueError(f"Expected a grey (y, x) or RGB (y, x, 3) image, got shape {array.shape}.")
        low, high = np.percentile(grey, (0.5, 99.5))
        self._signal = np.clip((grey - low) / max(high - low, 1e-9), 0, 1).astype(np.float32)

    def predict(self, prompt: Prompt, *, multimask: bool = True) -> Candidates:
        """Return up to three candidate masks for ``prompt``, best consensus first."""
        if self._signal is None:
            raise RuntimeError("Call set_image() before predict().")
        prompt.check_inside(self._signal.shape)
        window = self._window(prompt)
        crop = self._smoothed(window)
        markers, seed = self._markers(prompt, window, crop.shape)
        masks = [_keep_seeded(m, seed) for m in self._segmentations(crop, markers)]
        masks = [m for m in masks if m.any()] or [seed]
        scores = _consensus(masks)
        full = np.zeros((len(masks), *self._signal.shape), dtype=bool)
        ys, xs = window
        full[:, ys, xs] = np.stack(masks)
        candidates = Candidates.sorted(full, scores, self.name)
        if not multimask:
            return Candidates(candidates.masks_yx[:1], candidates.scores[:1], self.name)
        return candidates

    def _require_signal(self) -> NDArray[np.float32]:
        if self._signal is None:
            raise RuntimeError("Call set_image() before predict().")
        return self._signal

    def _window(self, prompt: Prompt) -> tuple[slice, slice]:
        height, width = self._require_signal().shape
        if prompt.box_xyxy is not None:
            x0, y0, x1, y1 = prompt.box_xyxy
            my = max(3.0, (y1 - y0) * self.settings.margin_fraction)
            mx = max(3.0, (x1 - x0) * self.settings.margin_fraction)
            y0, y1, x0, x1 = y0 - my, y1 + my, x0 - mx, x1 + mx
        else:
            points = prompt.points_yx[prompt.point_labels == 1]
            if prompt.mask_yx is not None and prompt.mask_yx.any():
                ys, xs = np.nonzero(prompt.mask_yx)
                points = np.concatenate([points, [[ys.min(), xs.min()], [ys.max(), xs.max()]]])
            elif not len(points):
                points = prompt.points_yx
            half = self.settings.window_px
            (y0, x0), (y1, x1) = points.min(axis=0) - half, points.max(axis=0) + half
        return (
            slice(max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, height)),
            slice(max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, width)),
        )

    def _smoothed(self, window: tuple[slice, slice]) -> NDArray[np.float32]:
        from scipy import ndimage

        result: NDArray[np.float32] = ndimage.gaussian_filter(
            self._require_signal()[window], self.settings.smoothing_sigma_px
        )
        return result

    def _markers(
        self, prompt: Prompt, window: tuple[slice, slice], shape: tuple[int, int]
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
        """Markers (1 = object, 2 = background, 0 = unknown) and the object seed mask."""
        ys, xs = window
        markers = np.zeros(shape, dtype=np.int32)
        markers[0, :] = markers[-1, :] = markers[:, 0] = markers[:, -1] = 2
        if prompt.box_xyxy is not None:
            x0, y0, x1, y1 = prompt.box_xyxy
            inside = np.zeros(shape, dtype=bool)
            inside[
                max(int(y0) - ys.start, 0) : int(np.ceil(y1)) - ys.start + 1,
                max(int(x0) - xs.start, 0) : int(np.ceil(x1)) - xs.start + 1,
            ] = True
            markers[~inside] = 2
        seed = np.zeros(shape, dtype=bool)
        for (y, x), label in zip(prompt.points_yx, prompt.point_labels, strict=False):
            r, c = round(y) - ys.start, round(x) - xs.start
            if 0 <= r < shape[0] and 0 <= c < shape[1]:
                if label == 1:
                    seed[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = True
                else:
                    markers[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = 2
        if prompt.mask_yx is not None:  # refining: the previous mask's core is object
            from scipy import ndimage

            previous = prompt.mask_yx[ys, xs]
            core = ndimage.binary_erosion(previous, iterations=2)
            seed |= core if core.any() else previous
        if not seed.any() and prompt.box_xyxy is not None:  # a box alone: seed its centre
            x0, y0, x1, y1 = prompt.box_xyxy
            r, c = int((y0 + y1) / 2) - ys.start, int((x0 + x1) / 2) - xs.start
            ry, rx = max(int((y1 - y0) / 6), 1), max(int((x1 - x0) / 6), 1)
            seed[max(r - ry, 0) : r + ry + 1, max(c - rx, 0) : c + rx + 1] = True
        markers[seed] = 1
        return markers, seed

    def _segmentations(self, crop: NDArray[np.float32], markers: NDArray[np.int32]) -> list[NDArray[np.bool_]]:
        from skimage import filters, segmentation

        out = []
        if (markers == 1).any() and (markers == 2).any():
            try:
                with warnings.catch_warnings():  # skimage warns on poorly conditioned windows
                    warnings.simplefilter("ignore")
                    walked = segmentation.random_walker(crop, markers, beta=self.settings.beta, mode="cg_j")
                out.append(walked == 1)
            except (ValueError, RuntimeError):  # degenerate windows (flat signal)
                pass
            gradient = filters.sobel(crop)
            out.append(segmentation.watershed(gradient, markers) == 1)
        out.append(_threshold_with_polarity(crop, markers))
        return out


def _threshold_with_polarity(crop: NDArray[np.float32], markers: NDArray[np.int32]) -> NDArray[np.bool_]:
    from skimage import filters

    if np.ptp(crop) <= 1e-6:
        result: NDArray[np.bool_] = markers == 1
        return result
    threshold = filters.threshold_otsu(crop)
    object_level = float(np.median(crop[markers == 1]))
    background_level = float(np.median(crop[markers == 2])) if (markers == 2).any() else 1.0 - object_level
    mask: NDArray[np.bool_] = crop > threshold if object_level >= background_level else crop <= threshold
    return mask


def _keep_seeded(mask: NDArray[np.bool_], seed: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The connected parts of ``mask`` that touch the seed, with holes filled."""
    from scipy import ndimage

    parts, _ = ndimage.label(mask)
    keep = np.unique(parts[seed & mask])
    keep = keep[keep > 0]
    return ndimage.binary_fill_holes(np.isin(parts, keep)) if keep.size else np.zeros_like(mask)


def _consensus(masks: list[NDArray[np.bool_]]) -> NDArray[np.float32]:
    """Mean IoU of every mask with the others (1.0 for a single mask)."""
    if len(masks) == 1:
        return np.ones(1, dtype=np.float32)
    flat = np.stack([m.ravel() for m in masks]).astype(np.float32)
    inter = flat @ flat.T
    area = flat.sum(axis=1)
    iou = inter / np.maximum(area[:, None] + area[None, :] - inter, 1.0)
    np.fill_diagonal(iou, 0.0)
    result: NDArray[np.float32] = (iou.sum(axis=1) / (len(masks) - 1)).astype(np.float32)
    return result
