"""Track prompts from the CSV files of ``prelabel`` plus a ``frame`` column.

- Points: ``frame,y,x[,label][,object]``; rows with the same ``object`` (on any frames) prompt
  one object, so one object can be prompted on several frames; without ``object`` each row is
  its own object.
- Boxes: ``frame,x0,y0,x1,y1[,object]``; one box per row; ``object`` joins boxes of one object
  on several frames.

Frame indices are 0-based (napari's slider).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from napari_instseg.core.prompting.base import Prompt, PromptError
from napari_instseg.core.prompts_io import PromptFileError, read_prompt_table

__all__ = ["TrackPrompt", "read_track_boxes_csv", "read_track_points_csv"]


@dataclass(frozen=True)
class TrackPrompt:
    """A prompt of one object (``object`` as written in the file) on one frame."""

    object: str
    frame: int
    prompt: Prompt


def _frames(frame: pd.DataFrame, path: Path, n_frames: int | None) -> np.ndarray:
    values = frame["frame"].to_numpy(dtype=float)
    bad = (values != np.round(values)) | (values < 0) | (n_frames is not None and values >= n_frames)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        limit = f" (the stack has frames 0 to {n_frames - 1})" if n_frames is not None else ""
        raise PromptFileError(f"{path}: row {row + 2}, column 'frame': {values[row]:g} is not a frame{limit}.")
    return values.astype(np.int64)


def _objects(frame: pd.DataFrame) -> pd.Series:
    if "object" in frame.columns:
        return frame["object"].astype(str)
    return pd.Series([f"row {i + 2}" for i in range(len(frame))], index=frame.index)


def read_track_points_csv(path: str | os.PathLike[str], n_frames: int | None = None) -> list[TrackPrompt]:
    """One :class:`TrackPrompt` per (object, frame) from ``frame,y,x[,label][,object]``.

    Raises
    ------
    PromptFileError
        Naming the file, row and column of a missing or bad value.
    """
    target = Path(path)
    frame = read_prompt_table(target, ("frame", "y", "x"))
    frames = _frames(frame, target, n_frames)
    labels = frame["label"] if "label" in frame.columns else pd.Series(1, index=frame.index)
    out = []
    for (key, t), rows in frame.groupby([_objects(frame), frames], sort=False):
        try:
            prompt = Prompt.make(rows[["y", "x"]].to_numpy(), labels.loc[rows.index].to_numpy())
        except PromptError as exc:
            raise PromptFileError(f"{target}: object {key!r} on frame {t}: {exc}") from exc
        out.append(TrackPrompt(str(key), int(str(t)), prompt))
    return out


def read_track_boxes_csv(path: str | os.PathLike[str], n_frames: int | None = None) -> list[TrackPrompt]:
    """One :class:`TrackPrompt` per row from ``frame,x0,y0,x1,y1[,object]``."""
    target = Path(path)
    frame = read_prompt_table(target, ("frame", "x0", "y0", "x1", "y1"))
    frames = _frames(frame, target, n_frames)
    keys = _objects(frame).tolist()
    boxes = frame[["x0", "y0", "x1", "y1"]].to_numpy()
    return [TrackPrompt(str(k), int(t), Prompt.make(box_xyxy=b)) for k, t, b in zip(keys, frames, boxes, strict=True)]
