"""Reading point and box prompts from CSV files (image pixel coordinates).

- Points: columns ``y,x`` and optionally ``label`` (1 positive, 0 negative) and ``object``
  (rows with the same object value prompt one object; without it each row is one object).
- Boxes: columns ``x0,y0,x1,y1`` in pixels, any corner order; one object per row.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from napari_instseg.core.csvfile import read_csv_file
from napari_instseg.core.errors import InstsegError
from napari_instseg.core.prompting.base import Prompt, PromptError

__all__ = ["PromptFileError", "read_boxes_csv", "read_points_csv", "read_prompt_table"]


class PromptFileError(InstsegError, ValueError):
    """A prompt CSV file is malformed; the message names the file, row and column."""


def _plain(value: object) -> object:
    """A numpy scalar as the Python value (so messages show 0.5, not np.float64(0.5))."""
    return value.item() if isinstance(value, np.generic) else value


def read_prompt_table(path: str | os.PathLike[str], required: tuple[str, ...]) -> pd.DataFrame:
    """Read a prompt CSV (columns lower-cased) that must hold ``required``; PromptFileError otherwise."""
    target = Path(path)
    expected = f"a CSV with columns {list(required)}"
    frame = read_csv_file(target, error=PromptFileError, noun="file", expected=expected)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise PromptFileError(f"{target}: missing column(s) {missing}; found {list(frame.columns)}.")
    for column in required:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise PromptFileError(
                f"{target}: row {row + 2} (line in file), column {column!r}: "
                f"{_plain(frame[column].iloc[row])!r} is not a number."
            )
        infinite = ~np.isfinite(values.to_numpy(dtype=np.float64))
        if infinite.any():
            row = int(np.flatnonzero(infinite)[0])
            raise PromptFileError(
                f"{target}: row {row + 2} (line in file), column {column!r}: {_plain(values.iloc[row])!r} is not finite."
            )
        frame[column] = values
    if frame.empty:
        raise PromptFileError(f"{target}: no rows; expected at least one prompt.")
    return frame


def _point_labels(frame: pd.DataFrame, target: Path) -> pd.Series:
    """The ``label`` column as integers 0 / 1, refusing anything else with its row."""
    if "label" not in frame.columns:
        positive: pd.Series = pd.Series(1, index=frame.index)
        return positive
    values = pd.to_numeric(frame["label"], errors="coerce")
    bad = ~values.isin((0, 1))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise PromptFileError(
            f"{target}: row {row + 2} (line in file), column 'label': {_plain(frame['label'].iloc[row])!r} is not "
            "1 (positive) or 0 (negative)."
        )
    labels: pd.Series = values.astype(np.int64)
    return labels


def read_points_csv(path: str | os.PathLike[str]) -> list[Prompt]:
    """Return one :class:`Prompt` per object from a points CSV (``y,x[,label][,object]``)."""
    frame = read_prompt_table(path, ("y", "x"))
    labels = _point_labels(frame, Path(path))
    groups = frame["object"] if "object" in frame.columns else pd.Series(np.arange(len(frame)), index=frame.index)
    prompts = []
    for key, rows in frame.groupby(groups, sort=False):
        try:
            prompts.append(Prompt.make(rows[["y", "x"]].to_numpy(), labels.loc[rows.index].to_numpy()))
        except PromptError as exc:
            raise PromptFileError(f"{Path(path)}: object {key!r}: {exc}") from exc
    return prompts


def read_boxes_csv(path: str | os.PathLike[str]) -> list[Prompt]:
    """Return one box :class:`Prompt` per row of a boxes CSV (``x0,y0,x1,y1``)."""
    frame = read_prompt_table(path, ("x0", "y0", "x1", "y1"))
    prompts = []
    for row, box in enumerate(frame[["x0", "y0", "x1", "y1"]].to_numpy(), start=2):
        if box[0] == box[2] or box[1] == box[3]:
            raise PromptFileError(f"{Path(path)}: row {row} (line in file): box {box.tolist()} has no area.")
        prompts.append(Prompt.make(box_xyxy=box))
    return prompts
