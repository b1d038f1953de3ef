"""The project's one CSV reader: every row must have as many fields as the header.

pandas alone misreads a ragged file silently: a row with one field more than the header turns
the first column into the index (``y,x`` / ``100,200,1`` reads as y=200, x=1), and a row with
fewer fields is filled with NaN. :func:`read_csv_file` counts the fields of every record first
(quotes respected, blank lines skipped as pandas does) and refuses such a file naming the line.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["read_csv_file"]


def _check_fields(target: Path, error: type[Exception], noun: str) -> None:
    """Raise ``error`` naming the first line whose field count differs from the header's."""
    with open(target, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, strict=True)
        header: list[str] | None = None
        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # a blank line
                if header is None:
                    header = row
                elif len(row) != len(header):
                    raise error(
                        f"{target}: cannot read the CSV {noun}: line {reader.line_num} has {len(row)} field(s), "
                        f"the header has {len(header)} ({', '.join(h.strip() for h in header)}); every row "
                        "needs one value per column."
                    )
        except csv.Error as exc:
            raise error(f"{target}: cannot read the CSV {noun}: line {reader.line_num}: {exc}.") from exc


def read_csv_file(
    path: str | os.PathLike[str],
    *,
    error: type[Exception],
    noun: str,
    expected: str,
    dtype: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Read a CSV file whose first line is the header, refusing ragged rows.

    Parameters
    ----------
    path : path-like
        The CSV file (UTF-8).
    error : type of Exception
        The error raised (a :class:`~napari_instseg.core.errors.InstsegError` subclass), with
        a message that names the file and, for a ragged row, the line.
    noun : str
        What the file is, for messages (``"table"``: "the table is empty", "cannot read the
        CSV table").
    expected : str
        What an empty file should have held, for messages (``"a CSV with an 'id' column"``).
    dtype : mapping, optional
        Column dtypes passed to :func:`pandas.read_csv`.

    Returns
    -------
    pandas.DataFrame
        One row per record, a default RangeIndex (no column is ever taken as the index).

    Raises
    ------
    error
        Empty file, not UTF-8, a row with more or fewer fields than the header, unbalanced
        quotes, or anything else pandas cannot parse.
    """
    target = Path(path)
    try:
        _check_fields(target, error, noun)
        return pd.read_csv(target, index_col=False, dtype=dtype)
    except pd.errors.EmptyDataError as exc:
        raise error(f"{target}: the {noun} is empty; expected {expected}.") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{target}: not UTF-8 text (byte {exc.start}); expected {expected}.") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        if isinstance(exc, error):
            raise
        raise error(f"{target}: cannot read the CSV {noun}: {exc}".rstrip() + ".") from exc
