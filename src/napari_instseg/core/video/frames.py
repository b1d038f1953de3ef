"""Frames of an in-memory (t, y, x[, c]) array or z-stack, fed lazily to SAM 2's video predictor.

SAM 2's ``init_state`` reads a JPEG folder or an MP4 file into one tensor of every frame
(12 MiB per frame at 1024 x 1024, float32). :class:`LazyFrames` is what it calls
``inference_state["images"]``: a sequence whose item ``t`` is frame ``t`` resized and normalised
exactly as sam2's loader does (``sam2.utils.misc._load_img_as_tensor``: RGB uint8, PIL
``resize`` to a square with PIL's default filter, divided by 255, minus the ImageNet mean,
divided by its standard deviation), computed when the predictor asks for it and kept only
for the last few frames.

Intensities that are not uint8 are scaled to 0..255 once for the whole stack (from the
0.1 / 99.9 percentiles of up to eight evenly spaced frames), so a frame looks the same to the
model wherever it lies in the series.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.errors import InstsegError

__all__ = ["IMG_MEAN", "IMG_STD", "FrameStackError", "LazyFrames", "stack_shape"]

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)
_SAMPLE_FRAMES = 8


class FrameStackError(InstsegError, ValueError):
    """A frame stack has a shape or dtype the video predictor cannot read."""


def stack_shape(frames: Any) -> tuple[int, int, int]:
    """(n_frames, height, width) of a (t, y, x) grey or (t, y, x, 3|4) colour stack.

    Raises
    ------
    FrameStackError
        For any other shape, an empty stack, or a non-numeric dtype.
    """
    shape = tuple(int(s) for s in np.shape(frames))
    dtype = np.dtype(getattr(frames, "dtype", np.asarray(frames).dtype))
    if dtype.kind not in "uifb":
        raise FrameStackError(f"Frame stack has dtype {dtype}; expected integers or floats.")
    if len(shape) == 3 or (len(shape) == 4 and shape[-1] in (3, 4)):
        if min(shape[:3]) < 1:
            raise FrameStackError(f"Frame stack of shape {shape} is empty.")
        return shape[0], shape[1], shape[2]
    raise FrameStackError(
        f"Expected a (t, y, x) grey or (t, y, x, 3|4) colour stack (or a z-stack in the same order), got shape {shape}."
    )


class LazyFrames:
    """SAM 2 input frames computed on demand from a frame stack.

    Parameters
    ----------
    frames : array-like, shape (t, y, x) or (t, y, x, 3|4)
        Any array that supports ``frames[t]`` (numpy, memmap, zarr, dask); read one frame at
        a time.
    image_size : int
        The model's square input size (``predictor.image_size``, 1024 for SAM 2.1).
    device : str or torch.device
        Where frame tensors are put (``cpu`` with ``offload_video_to_cpu``).
    keep : int
        How many converted frames are kept (least recently used are dropped).
    """

    def __init__(self, frames: Any, image_size: int, device: Any = "cpu", *, keep: int = 2) -> None:
        self.n_frames, self.video_height, self.video_width = stack_shape(frames)
        self.frames = frames
        self.image_size = int(image_size)
        self.device = device
        self.keep = max(1, int(keep))
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self._range = self._intensity_range()
        self.reads = 0

    def __len__(self) -> int:
        return self.n_frames

    def __getitem__(self, index: int) -> Any:
        t = int(index)
        if not 0 <= t < self.n_frames:
            raise IndexError(f"Frame {index} is outside the stack of {self.n_frames} frames.")
        if t in self._cache:
            self._cache.move_to_end(t)
            return self._cache[t]
        tensor = self.tensor_of(self.rgb_uint8(t))
        self._cache[t] = tensor
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return tensor

    def rgb_uint8(self, t: int) -> NDArray[np.uint8]:
        """Frame ``t`` as (y, x, 3) uint8 RGB, with the stack-wide intensity scaling."""
        frame = np.asarray(self.frames[t])
        self.reads += 1
        if frame.ndim == 3 and frame.shape[-1] == 4:
            frame = frame[..., :3]
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=-1)
        if frame.dtype != np.uint8:
            low, high = self._range
            scaled = (frame.astype(np.float32) - low) / max(high - low, 1e-6)
            frame = (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
        return np.ascontiguousarray(frame)

    def tensor_of(self, rgb: NDArray[np.uint8]) -> Any:
        """(3, S, S) float32 tensor of an RGB uint8 frame, as sam2's JPEG loader makes it."""
        import torch
        from PIL import Image

        resized = np.array(Image.fromarray(rgb).resize((self.image_size, self.image_size)))
        img = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)
        img -= torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
        img /= torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
        return img.to(self.device)

    def _intensity_range(self) -> tuple[float, float]:
        dtype = np.dtype(getattr(self.frames, "dtype", np.uint8))
        if dtype == np.uint8:
            return 0.0, 255.0
        picks = np.unique(np.linspace(0, self.n_frames - 1, min(_SAMPLE_FRAMES, self.n_frames)).round().astype(int))
        sample = np.concatenate([np.asarray(self.frames[int(t)], dtype=np.float32).ravel() for t in picks])
        low, high = np.percentile(sample, (0.1, 99.9))
        return float(low), float(high)
