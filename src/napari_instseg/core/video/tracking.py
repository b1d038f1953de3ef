"""Propagate prompted objects through a stack into a :class:`TrackStack`, frame by frame.

:func:`propagate_tracks` is the one loop that the Track panel, the CLI and scripts drive: it
yields a :class:`TrackProgress` after each frame (so a caller can show progress and stop
between frames), writes each frame with the per-frame commit rule, and makes the whole
propagation one undo step, also when it is stopped early.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.video.propagate import FrameMasks, ObjectPrompt, PropagationError, VideoPropagator, frame_order
from napari_instseg.core.video.tracks import TrackStack

__all__ = ["TrackProgress", "propagate_tracks"]


@dataclass(frozen=True)
class TrackProgress:
    """One frame done: ``done`` of ``total`` frames, the frame index and the ids written."""

    done: int
    total: int
    frame: int
    obj_ids: tuple[int, ...]


def propagate_tracks(
    stack: TrackStack,
    propagator: VideoPropagator,
    prompts: Sequence[ObjectPrompt] = (),
    *,
    direction: str = "forward",
    start: int | None = None,
    frames: tuple[int, int] | None = None,
) -> Iterator[TrackProgress]:
    """Add ``prompts``, propagate, and write every frame into ``stack`` (one undo step).

    A mask prompt (an existing instance, or a corrected mask) is written exactly as given on
    its frame. Each prompt's ``obj_id`` must be a track of ``stack`` (:meth:`TrackStack.new_track`, or an
    existing instance). The propagator must have been started on the stack's frames.

    Yields
    ------
    TrackProgress
        After each frame is written.

    Raises
    ------
    PropagationError
        For an unknown track id, a frame-count mismatch, or a bad range / direction.
    """
    if propagator.n_frames != stack.shape_tyx[0]:
        raise PropagationError(
            f"The propagator holds {propagator.n_frames} frames but the label stack has {stack.shape_tyx[0]}."
        )
    unknown = sorted({int(p.obj_id) for p in prompts} - set(stack.track_ids()))
    if unknown:
        raise PropagationError(f"Object id(s) {unknown} are not tracks of the label stack: create them first.")
    with stack.action("propagate"):
        for item in prompts:
            propagator.add_prompt(item)
        start, first, last = propagator.plan(direction=direction, start=start, frames=frames)
        total = len(frame_order(start, first, last, direction))
        exact = {(p.frame, int(p.obj_id)): p.prompt.mask_yx for p in prompts if _is_mask_only(p)}
        try:
            run = propagator.propagate(direction=direction, start=start, frames=(first, last))
            for done, masks in enumerate(run, start=1):
                stack.apply_frame(masks.frame, masks.obj_ids, _with_exact(masks, exact), masks.object_scores)
                yield TrackProgress(done, total, masks.frame, masks.obj_ids)
        finally:  # also when the caller stops early: rows follow the frames written
            stack.refresh_rows(propagator.obj_ids)


def _is_mask_only(item: ObjectPrompt) -> bool:
    prompt = item.prompt
    return prompt.mask_yx is not None and not len(prompt.points_yx) and prompt.box_xyxy is None


def _with_exact(masks: FrameMasks, exact: dict[tuple[int, int], Any]) -> NDArray[np.bool_]:
    """The frame's masks with the given (mask-prompted) ones put back exactly."""
    out = masks.masks_yx
    for k, obj_id in enumerate(masks.obj_ids):
        given = exact.get((masks.frame, obj_id))
        if given is not None:
            out = out.copy() if out is masks.masks_yx else out
            out[k] = given
    return out
