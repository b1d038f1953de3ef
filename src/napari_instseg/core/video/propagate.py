"""SAM 2 video propagation over an in-memory frame stack, through sam2's own video predictor.

The model is built by ``sam2.build_sam.build_sam2_video_predictor`` (the package's loading
code) from a checkpoint found as :mod:`napari_instseg.core.prompting.checkpoints` says. The
inference state is sam2's own dictionary (the keys of ``SAM2VideoPredictor.init_state``, a
test checks them against the installed sam2), except that ``images`` is a
:class:`~napari_instseg.core.video.frames.LazyFrames`: frames are read from the caller's array
when the model needs them, never written out as JPEG files.

Memory stays bounded for long series: frames are converted one at a time, the state lives on
the CPU (``offload_state_to_cpu``), and after each frame the per-frame memories that sam2 can
no longer reach are dropped. sam2 reads a non-conditioning frame's memory only from the
``num_maskmem - 1`` frames before the current one (``memory_temporal_stride_for_eval`` apart)
and its object pointer only from the ``max_obj_ptrs_in_encoder - 1`` frames before it, so
entries further than that from the current frame and from every prompted (conditioning)
frame are never read again: dropping them changes no mask (a test compares with a bare
``propagate_in_video``).

A corrected mask on any frame becomes a conditioning frame (the predictor is built with
``add_all_frames_to_correct_as_cond``) and propagation restarts from it.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.coords import points_yx_to_xy
from napari_instseg.core.errors import InstsegError
from napari_instseg.core.prompting.base import Prompt
from napari_instseg.core.prompting.checkpoints import CheckpointError, find_checkpoint, model_spec
from napari_instseg.core.video.frames import LazyFrames, stack_shape

__all__ = [
    "DIRECTIONS",
    "FrameMasks",
    "ObjectPrompt",
    "PropagationError",
    "VideoPropagator",
    "frame_order",
    "load_sam2_video_predictor",
]

logger = logging.getLogger(__name__)

DIRECTIONS = ("forward", "backward", "both")
"""Directions of propagation from the prompted frame(s)."""

VIDEO_OVERRIDES = ("++model.add_all_frames_to_correct_as_cond=true",)
"""Hydra overrides on top of sam2's own: a corrected frame conditions later frames."""


class PropagationError(InstsegError, ValueError):
    """A propagation request cannot be carried out (bad frame, range, direction or object)."""


@dataclass(frozen=True)
class ObjectPrompt:
    """A prompt for one object on one frame.

    Attributes
    ----------
    obj_id : int
        The object's id (> 0); it becomes the instance / track id.
    frame : int
        Frame (or z-slice) index the prompt is on.
    prompt : Prompt
        Points and / or a box, or a mask (``prompt.mask_yx``, e.g. an existing instance's).
    """

    obj_id: int
    frame: int
    prompt: Prompt


@dataclass(frozen=True)
class FrameMasks:
    """The predicted masks of every tracked object on one frame.

    Attributes
    ----------
    frame : int
        Frame index.
    obj_ids : tuple of int
        Object ids, in the order of ``masks_yx``.
    masks_yx : numpy.ndarray of bool, shape (n, height, width)
        Each object's full predicted mask at the stack's resolution (empty when absent).
    object_scores : numpy.ndarray of float32, shape (n,)
        SAM 2's object-presence logits (> 0: the object is on the frame).
    """

    frame: int
    obj_ids: tuple[int, ...]
    masks_yx: NDArray[np.bool_]
    object_scores: NDArray[np.float32]


def frame_order(start: int, first: int, last: int, direction: str) -> list[int]:
    """The frames a propagation from ``start`` visits within ``first..last`` (inclusive)."""
    if direction not in DIRECTIONS:
        raise PropagationError(f"direction must be one of {DIRECTIONS}, got {direction!r}.")
    forward = list(range(start, last + 1)) if direction in ("forward", "both") else []
    backward = list(range(start, first - 1, -1)) if direction in ("backward", "both") else []
    return forward + backward


def load_sam2_video_predictor(
    size: str, checkpoint: str | os.PathLike[str], device: str, *, image_size: int | None = None
) -> Any:
    """Build SAM 2.1's ``SAM2VideoPredictor`` of ``size`` from ``checkpoint`` (sam2's loader).

    ``image_size`` overrides the model's input size (see :class:`VideoPropagator`).

    Raises
    ------
    CheckpointError
        When the file cannot be loaded into the model (the message says why).
    """
    from napari_instseg.core.prompting.sam2 import avoid_llvm_clash, diagnose_checkpoint

    avoid_llvm_clash()
    from sam2.build_sam import build_sam2_video_predictor

    spec = model_spec(size)
    path = Path(checkpoint)
    overrides = list(VIDEO_OVERRIDES)
    if image_size is not None:
        overrides.append(f"++model.image_size={int(image_size)}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
            predictor = build_sam2_video_predictor(
                spec.config, ckpt_path=str(path), device=device, hydra_overrides_extra=overrides
            )
    except Exception as exc:  # torch raises several types; all mean "not this checkpoint"
        raise CheckpointError(diagnose_checkpoint(path, spec.config, exc)) from exc
    if not _has_cuda_extension():
        predictor.fill_hole_area = 0  # hole filling needs sam2's CUDA extension; it warns per frame
    return predictor


def _has_cuda_extension() -> bool:
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True


class VideoPropagator:
    """Prompt objects on frames of a stack and propagate them with SAM 2's video predictor.

    Parameters
    ----------
    size : {'tiny', 'small', 'base_plus', 'large'}
        Model size.
    checkpoint : path-like, optional
        Checkpoint file; None looks where :func:`find_checkpoint` looks.
    device : str, optional
        Torch device; None picks cuda, mps or cpu.
    offload : bool
        Keep frames and the tracking state in CPU memory (``offload_video_to_cpu`` and
        ``offload_state_to_cpu``); only matters on a GPU.
    keep_frames : int
        Converted frames kept in memory.
    image_size : int, optional
        The model's square input size (SAM 2.1: 1024). Smaller sizes (a multiple of 64) run
        much faster on a CPU and suit small frames or tests; real weights were trained at 1024.
    """

    def __init__(
        self,
        size: str = "tiny",
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | None = None,
        *,
        offload: bool = True,
        keep_frames: int = 2,
        image_size: int | None = None,
    ) -> None:
        from napari_instseg.core.prompting.sam2 import auto_device

        self.size = model_spec(size).size
        self.checkpoint = find_checkpoint(size, checkpoint)
        self.device = device or auto_device()
        self.offload = offload
        self.keep_frames = keep_frames
        if image_size is not None and (int(image_size) < 64 or int(image_size) % 64):
            raise PropagationError(f"image_size must be a multiple of 64 (at least 64), got {image_size}.")
        self.image_size = None if image_size is None else int(image_size)
        self._predictor: Any = None
        self.state: dict[str, Any] | None = None
        self.frames: LazyFrames | None = None
        self.pruned = 0

    @property
    def predictor(self) -> Any:
        """The ``SAM2VideoPredictor``, built on first use and kept for the propagator's life."""
        if self._predictor is None:
            self._predictor = load_sam2_video_predictor(
                self.size, self.checkpoint, self.device, image_size=self.image_size
            )
        return self._predictor

    @property
    def memory_window(self) -> int:
        """How many frames back sam2 reads memories and object pointers from."""
        p = self.predictor
        return int(max(p.num_maskmem * max(1, p.memory_temporal_stride_for_eval), p.max_obj_ptrs_in_encoder))

    # -- state ------------------------------------------------------------------------------
    def start(self, frames: Any) -> None:
        """Begin a new series: ``frames`` is (t, y, x) or (t, y, x, 3|4), read lazily."""
        import torch

        stack_shape(frames)
        predictor = self.predictor
        device = torch.device(self.device)
        self.frames = LazyFrames(frames, predictor.image_size, "cpu" if self.offload else device, keep=self.keep_frames)
        self.state = new_inference_state(predictor, self.frames, device, offload_state=self.offload)
        self.pruned = 0

    @property
    def n_frames(self) -> int:
        """Frames in the current series."""
        return 0 if self.frames is None else len(self.frames)

    @property
    def obj_ids(self) -> tuple[int, ...]:
        """Objects prompted so far, in sam2's order."""
        return () if self.state is None else tuple(int(i) for i in self.state["obj_ids"])

    def _require_state(self) -> dict[str, Any]:
        if self.state is None:
            raise PropagationError("No frame stack: call start(frames) first.")
        return self.state

    def _check_frame(self, frame: int) -> int:
        n = self.n_frames
        if not 0 <= int(frame) < n:
            raise PropagationError(f"Frame {frame} is outside the stack (frames 0 to {n - 1}).")
        return int(frame)

    # -- prompts ----------------------------------------------------------------------------
    def add_prompt(self, item: ObjectPrompt) -> FrameMasks:
        """Prompt one object on one frame; returns every object's mask on that frame.

        A mask prompt (an existing instance, or a corrected mask) replaces the object's
        points on that frame; points and a box replace its earlier points there.
        """
        import torch

        state = self._require_state()
        frame = self._check_frame(item.frame)
        if int(item.obj_id) < 1:
            raise PropagationError(f"Object ids must be positive, got {item.obj_id}.")
        shape_yx = (self.frames.video_height, self.frames.video_width)  # type: ignore[union-attr]
        item.prompt.check_inside(shape_yx)
        with torch.inference_mode():
            if item.prompt.mask_yx is not None and not len(item.prompt.points_yx) and item.prompt.box_xyxy is None:
                if not item.prompt.mask_yx.any():
                    raise PropagationError(f"The mask prompt of object {item.obj_id} on frame {frame} is empty.")
                _, ids, logits = self.predictor.add_new_mask(state, frame, int(item.obj_id), item.prompt.mask_yx)
            else:
                points = labels = None
                if len(item.prompt.points_yx):
                    points = points_yx_to_xy(item.prompt.points_yx).astype(np.float32)
                    labels = np.array(item.prompt.point_labels, dtype=np.int32)
                box = None if item.prompt.box_xyxy is None else np.asarray(item.prompt.box_xyxy, np.float32)
                _, ids, logits = self.predictor.add_new_points_or_box(
                    state, frame, int(item.obj_id), points=points, labels=labels, box=box
                )
        return self._frame_masks(frame, ids, logits)

    def add_prompts(self, items: Sequence[ObjectPrompt]) -> None:
        """Prompt several objects (on one or several frames)."""
        for item in items:
            self.add_prompt(item)

    def prompted_frames(self) -> list[int]:
        """Frames that hold a prompt (a conditioning frame) of any object."""
        state = self._require_state()
        frames: set[int] = set()
        for per_obj in (state["point_inputs_per_obj"], state["mask_inputs_per_obj"]):
            for inputs in per_obj.values():
                frames.update(int(t) for t in inputs)
        return sorted(frames)

    # -- propagation ------------------------------------------------------------------------
    def plan(
        self, *, direction: str = "forward", start: int | None = None, frames: tuple[int, int] | None = None
    ) -> tuple[int, int, int]:
        """Check a propagation request and return its (start, first, last) frames.

        See :meth:`propagate` for the parameters; :func:`frame_order` gives the visiting order.
        """
        prompted = self.prompted_frames()
        if not prompted:
            raise PropagationError("No object has been prompted: add a point, box or mask first.")
        first, last = frames if frames is not None else (0, self.n_frames - 1)
        first, last = self._check_frame(first), self._check_frame(last)
        if first > last:
            raise PropagationError(f"Frame range {first}:{last} is empty (first > last).")
        if start is None:
            inside = [t for t in prompted if first <= t <= last] or prompted
            start = inside[-1] if direction == "backward" else inside[0]
        start = self._check_frame(start)
        if not first <= start <= last:
            raise PropagationError(f"Start frame {start} is outside the range {first}:{last}.")
        frame_order(start, first, last, direction)  # validates the direction
        return start, first, last

    def propagate(
        self,
        *,
        direction: str = "forward",
        start: int | None = None,
        frames: tuple[int, int] | None = None,
    ) -> Iterator[FrameMasks]:
        """Propagate every prompted object and yield their masks frame by frame.

        Parameters
        ----------
        direction : {'forward', 'backward', 'both'}
            'both' runs forward, then backward from the same start.
        start : int, optional
            First frame; default: the earliest prompted frame (forward), the latest
            (backward), the earliest for 'both'.
        frames : (first, last), optional
            Inclusive frame range to stay within (default: the whole stack).

        Yields
        ------
        FrameMasks
            In processing order (``start`` is yielded by each direction).
        """
        state = self._require_state()
        start, first, last = self.plan(direction=direction, start=start, frames=frames)
        runs = []
        if direction in ("forward", "both"):
            runs.append((False, last - start))
        if direction in ("backward", "both"):
            runs.append((True, start - first))
        for reverse, count in runs:
            yield from self._run(state, start, count, reverse)

    def _run(self, state: dict[str, Any], start: int, count: int, reverse: bool) -> Iterator[FrameMasks]:
        generator = self.predictor.propagate_in_video(
            state, start_frame_idx=start, max_frame_num_to_track=count, reverse=reverse
        )
        if reverse and start == 0:  # sam2 yields nothing backward from frame 0: give that frame
            for _ in generator:
                pass
            yield self.masks_on(0)
            return
        for frame_idx, ids, logits in generator:
            masks = self._frame_masks(frame_idx, ids, logits)
            self._prune(state, frame_idx)
            yield masks

    def masks_on(self, frame: int) -> FrameMasks:
        """The current masks of every object on ``frame`` (from the tracking state)."""
        import torch

        state = self._require_state()
        frame = self._check_frame(frame)
        with torch.inference_mode():
            out = self.predictor._consolidate_temp_output_across_obj(
                state, frame, is_cond=True, consolidate_at_video_res=True
            )
            _, logits = self.predictor._get_orig_video_res_output(state, out["pred_masks_video_res"])
        return self._frame_masks(frame, state["obj_ids"], logits)

    def correct(self, frame: int, obj_id: int, mask_yx: NDArray[np.bool_]) -> FrameMasks:
        """Replace an object's mask on ``frame`` by a corrected one (a new conditioning frame).

        Propagate again from ``frame`` (``propagate(start=frame, ...)``) to carry the
        correction to the following (or preceding) frames.
        """
        if int(obj_id) not in self.obj_ids:
            raise PropagationError(f"Object {obj_id} is not tracked; tracked objects: {list(self.obj_ids)}.")
        return self.add_prompt(ObjectPrompt(int(obj_id), frame, Prompt.make(mask_yx=mask_yx)))

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking an object (its prompts and memories are dropped)."""
        import torch

        state = self._require_state()
        with torch.inference_mode():
            self.predictor.remove_object(state, int(obj_id), strict=False, need_output=False)

    # -- helpers ----------------------------------------------------------------------------
    def _frame_masks(self, frame: int, ids: Sequence[int], logits: Any) -> FrameMasks:
        state = self._require_state()
        masks = (logits > 0.0).squeeze(1).cpu().numpy().astype(bool)
        scores = []
        for obj_id in ids:
            idx = state["obj_id_to_idx"][obj_id]
            out = _output_on(state, idx, int(frame))
            score = float("nan") if out is None else float(out["object_score_logits"].float().reshape(-1)[0])
            scores.append(score)
        return FrameMasks(int(frame), tuple(int(i) for i in ids), masks, np.asarray(scores, dtype=np.float32))

    def _prune(self, state: dict[str, Any], current: int) -> None:
        """Drop per-frame memories no later frame can read (see the module docstring)."""
        window = self.memory_window
        anchors = [current, *self.prompted_frames()]
        for per_obj in state["output_dict_per_obj"].values():
            non_cond = per_obj["non_cond_frame_outputs"]
            for t in [t for t in non_cond if min(abs(t - a) for a in anchors) > window]:
                del non_cond[t]
                self.pruned += 1


def _output_on(state: dict[str, Any], obj_idx: int, frame: int) -> dict[str, Any] | None:
    for holder in (state["temp_output_dict_per_obj"][obj_idx], state["output_dict_per_obj"][obj_idx]):
        for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
            out = holder[key].get(frame)
            if out is not None:
                return out  # type: ignore[no-any-return]
    return None


def new_inference_state(predictor: Any, frames: LazyFrames, device: Any, *, offload_state: bool) -> dict[str, Any]:
    """sam2's inference state (as ``SAM2VideoPredictor.init_state`` builds it) over lazy frames."""
    from collections import OrderedDict

    import torch

    state: dict[str, Any] = {
        "images": frames,
        "num_frames": len(frames),
        "offload_video_to_cpu": frames.device == "cpu",
        "offload_state_to_cpu": offload_state,
        "video_height": frames.video_height,
        "video_width": frames.video_width,
        "device": device,
        "storage_device": torch.device("cpu") if offload_state else device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    del predictor  # sam2's init_state also encodes frame 0 here; frames are encoded when prompted
    return state
