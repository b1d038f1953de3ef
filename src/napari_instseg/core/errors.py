"""Exception hierarchy of napari-instseg.

Every error the package raises on purpose derives from :class:`InstsegError` and from the
built-in exception that fits (``ValueError``, ``TypeError``), so callers can catch either.
"""

from __future__ import annotations

__all__ = [
    "CocoFormatError",
    "InputFileError",
    "InstsegError",
    "LabelImageError",
    "OutputPathError",
    "ProtocolError",
    "TableError",
]


class InstsegError(Exception):
    """Base class of the errors raised by napari-instseg."""


class ProtocolError(InstsegError, ValueError):
    """An annotation protocol (taxonomy, occlusion rule, thresholds, rates) is invalid."""


class LabelImageError(InstsegError, ValueError):
    """A label image has the wrong dimensionality, dtype or value range."""


class TableError(InstsegError, ValueError):
    """An instance table has missing columns, bad values or ids that do not match."""


class CocoFormatError(InstsegError, ValueError):
    """A COCO file or dict is not a valid instances file; the message says where."""


class InputFileError(InstsegError, ValueError):
    """An input file cannot be read as what it should be (empty, truncated, not UTF-8, not an
    image...); the message names the file and what was expected."""


class OutputPathError(InstsegError, ValueError):
    """An output path is unusable: it is an input, would overwrite files, has the wrong
    extension, or its folder cannot be written. Raised before any work is done."""
