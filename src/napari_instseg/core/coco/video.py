"""COCO for stacks: one image per frame plus the YouTube-VIS / TAO video conventions.

What :func:`export_coco_video` writes is a standard COCO instances dict (``pycocotools``
reads it and evaluates it frame by frame, each frame an image) with:

- ``videos``: ``[{"id", "name", "width", "height", "length"}]`` (TAO / YouTube-VIS);
- on every image: ``video_id`` and ``frame_index`` (0-based; TAO's ``frame_index``), plus
  ``frame_id`` (YouTube-VIS-style tools read that name);
- on every annotation: ``video_id`` and ``track_id`` (= our ``instance_id``: one id per object
  across frames); ``occlusion`` and ``occluded_fraction`` are the tier **on that frame**;
- ``tracks``: ``[{"id", "category_id", "video_id", "absent_frames"}]`` (TAO lists tracks;
  ``absent_frames`` holds the frames where propagation found the object absent, which
  YouTube-VIS writes as ``null`` segmentations).

:func:`import_coco_video` reads such a file back into a label stack, the track table and the
per-frame records; annotations that carry ``track_id`` but no ``instance_id`` (files from
other tools) take the track id as instance id.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from napari_instseg.core.coco._export import AnnotatedImage, CocoExport, export_coco
from napari_instseg.core.coco._import import import_coco, load_coco_json
from napari_instseg.core.errors import CocoFormatError
from napari_instseg.core.instances import apply_rows, empty_table
from napari_instseg.core.protocol import AnnotationProtocol

__all__ = ["ImportedVideo", "export_coco_video", "import_coco_video"]


@dataclass(frozen=True)
class ImportedVideo:
    """One video of a COCO video file.

    Attributes
    ----------
    video : dict
        The ``videos`` record (``id``, ``name``...), every key kept.
    labels_tyx : numpy.ndarray of uint32, shape (t, y, x)
        Visible labels per frame, in ``frame_index`` order.
    table : DataFrame
        One row per track (instance id = track id); ``occlusion`` is the worst tier over frames.
    records : dict
        ``{frame: {track_id: FrameRecord}}`` (present with its tier, or absent).
    protocol : AnnotationProtocol
    images : list of dict
        The image records in frame order.
    """

    video: dict[str, Any]
    labels_tyx: NDArray[np.uint32]
    table: pd.DataFrame
    records: dict[int, dict[int, Any]]
    protocol: AnnotationProtocol
    images: list[dict[str, Any]]

    def track_stack(self) -> Any:
        """A :class:`~napari_instseg.core.video.tracks.TrackStack` of this video (no undo history);
        each track's row takes its worst per-frame tier."""
        from napari_instseg.core.video.tracks import TrackStack

        stack = TrackStack(self.labels_tyx.copy(), self.table, self.protocol)
        stack.records = {t: dict(per) for t, per in self.records.items()}
        stack.refresh_rows()
        stack.undo_stack.clear()
        return stack


def export_coco_video(
    stack: Any,
    *,
    name: str = "video",
    video_id: int = 1,
    segmentation: str = "rle",
    progress: Any = None,
) -> CocoExport:
    """Export a :class:`~napari_instseg.core.video.tracks.TrackStack` as a COCO video dict.

    Parameters
    ----------
    stack : TrackStack
        Labels, track table and per-frame records.
    name : str
        The video's name; frames are named ``{name}/{frame:05d}.tif``.
    video_id : int
        The ``videos`` id written on every image and annotation.
    segmentation : {'rle', 'polygon'}
        As :func:`~napari_instseg.core.coco.export_coco`.
    progress : callable, optional
        ``progress(done, total)`` after each frame.
    """
    n_frames = stack.shape_tyx[0]
    images = [
        AnnotatedImage(
            stack.labels_tyx[t],
            _frame_table(stack, t),
            file_name=f"{name}/{t:05d}.tif",
            image_id=t + 1,
            metadata={"video_id": int(video_id), "frame_index": t, "frame_id": t},
        )
        for t in range(n_frames)
    ]
    result = export_coco(images, stack.protocol, segmentation=segmentation, progress=progress)
    coco = result.coco
    for ann in coco["annotations"]:
        ann["video_id"] = int(video_id)
        ann["track_id"] = int(ann["instance_id"])
    height, width = stack.shape_tyx[1:]
    coco["videos"] = [{"id": int(video_id), "name": name, "width": width, "height": height, "length": n_frames}]
    coco["tracks"] = [_track_record(stack, track_id, int(video_id)) for track_id in _tracks_with_data(stack)]
    return CocoExport(coco, result.summary)


def _frame_table(stack: Any, t: int) -> pd.DataFrame:
    """The track table with the occlusion of frame ``t`` (where a record says so)."""
    rows = {}
    for track_id, rec in stack.records.get(t, {}).items():
        if rec.present and track_id in stack.table.index and not stack.table.at[track_id, "occlusion_manual"]:
            row = {str(k): v for k, v in stack.table.loc[track_id].items()}
            row.update(occlusion=rec.occlusion, occluded_fraction=rec.occluded_fraction)
            rows[int(track_id)] = row
    return apply_rows(stack.table, rows, source=f"frame {t}") if rows else stack.table


def _tracks_with_data(stack: Any) -> list[int]:
    present = set(np.unique(stack.labels_tyx).tolist()) - {0}
    recorded = {int(i) for per in stack.records.values() for i in per}
    return sorted(present | (recorded & set(stack.track_ids())))


def _track_record(stack: Any, track_id: int, video_id: int) -> dict[str, Any]:
    absent = sorted(t for t, per in stack.records.items() if track_id in per and not per[track_id].present)
    category = int(stack.table.at[track_id, "category_id"]) if track_id in stack.table.index else 0
    return {"id": track_id, "category_id": category, "video_id": video_id, "absent_frames": absent}


def import_coco_video(
    coco: Mapping[str, Any] | str | os.PathLike[str], *, video_id: int | None = None, source: str | None = None
) -> ImportedVideo:
    """Read one video of a COCO video dict or file (see the module docstring).

    Raises
    ------
    CocoFormatError
        When images lack ``video_id`` / ``frame_index``, the video is unknown or ambiguous,
        frames are missing or repeated, or frames differ in size.
    """
    if not isinstance(coco, Mapping):
        source = source or str(coco)
        coco = load_coco_json(coco)
    source = source or "COCO video data"
    data = _with_track_ids(coco)
    video = _pick_video(data, video_id, source)
    vid = int(video["id"])
    data["images"] = [im for im in data.get("images", []) if isinstance(im, Mapping) and im.get("video_id") == vid]
    wanted = {im.get("id") for im in data["images"]}
    data["annotations"] = [a for a in data.get("annotations", []) if a.get("image_id") in wanted]
    imported = import_coco(data, source=source)
    frames = sorted(imported.images, key=lambda im: _frame_index(im.image, source))
    indices = [_frame_index(im.image, source) for im in frames]
    if indices != list(range(len(indices))):
        raise CocoFormatError(
            f"{source}: video {vid} has frame_index values {indices[:20]}; expected 0 to {len(indices) - 1}."
        )
    shapes = {im.labels_yx.shape for im in frames}
    if len(shapes) != 1:
        raise CocoFormatError(f"{source}: frames of video {vid} differ in size: {sorted(shapes)}.")
    labels = np.stack([im.labels_yx for im in frames]).astype(np.uint32)
    records, table = _records_and_table(frames, data.get("tracks", []), vid)
    return ImportedVideo(dict(video), labels, table, records, imported.protocol, [im.image for im in frames])


def _with_track_ids(coco: Mapping[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(dict(coco))  # never change the caller's dicts
    for ann in data.get("annotations", []) or []:
        if isinstance(ann, dict) and "instance_id" not in ann and "track_id" in ann:
            ann["instance_id"] = ann["track_id"]
    return data


def _pick_video(coco: Mapping[str, Any], video_id: int | None, source: str) -> dict[str, Any]:
    videos = coco.get("videos")
    if not isinstance(videos, list) or not videos:
        found = {im.get("video_id") for im in coco.get("images", []) if isinstance(im, Mapping)}
        ids = sorted(int(i) for i in found if isinstance(i, int))
        if not ids:
            raise CocoFormatError(f"{source}: no 'videos' list and no image carries a 'video_id'.")
        videos = [{"id": i, "name": f"video {i}"} for i in ids]
    if video_id is None:
        if len(videos) > 1:
            listed = [v.get("id") for v in videos]
            raise CocoFormatError(f"{source}: holds {len(videos)} videos {listed}; choose one with video_id.")
        return dict(videos[0])
    for video in videos:
        if video.get("id") == video_id:
            return dict(video)
    raise CocoFormatError(f"{source}: no video with id {video_id}; found {[v.get('id') for v in videos]}.")


def _frame_index(image: Mapping[str, Any], source: str) -> int:
    value = image.get("frame_index", image.get("frame_id"))
    if not isinstance(value, int) or isinstance(value, bool):
        raise CocoFormatError(f"{source}: image {image.get('id')} has no integer 'frame_index' (got {value!r}).")
    return value


def _records_and_table(frames: list[Any], tracks: Any, video_id: int) -> tuple[dict[int, dict[int, Any]], pd.DataFrame]:
    from napari_instseg.core.video.tracks import FrameRecord

    records: dict[int, dict[int, Any]] = {}
    rows: dict[int, dict[str, Any] | None] = {}
    for t, im in enumerate(frames):
        per: dict[int, Any] = {}
        for track_id in im.table.index:
            row = {str(k): v for k, v in im.table.loc[track_id].items()}
            visible = int(np.count_nonzero(im.labels_yx == track_id))
            fraction = float(row["occluded_fraction"])
            predicted = visible if np.isnan(fraction) or fraction >= 1 else round(visible / (1 - fraction))
            per[int(track_id)] = FrameRecord(True, predicted, visible, fraction, str(row["occlusion"]), float("nan"))
            rows.setdefault(int(track_id), row)
        records[t] = per
    for track in tracks if isinstance(tracks, list) else []:
        if isinstance(track, Mapping) and track.get("video_id", video_id) == video_id:
            for t in track.get("absent_frames", []) or []:
                if isinstance(t, int) and 0 <= t < len(frames):
                    records[t][int(track["id"])] = FrameRecord(False, 0, 0, float("nan"), "", float("nan"))
    table = apply_rows(empty_table(), rows, source="tracks")
    return records, table
