"""The single error type for bad input data.

Every message names the thing that is wrong and where: ``"<path>: row <n> (line <m>): <what>"`` for
CSV rows (``row`` is the 1-based data row, ``line`` the 1-based line in the file counting the
header), or ``"<image path>: <what>"`` for the image-folder layout. The CLI prints it as one line.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad or unreadable input data (missing file, malformed row, wrong image size, ...)."""


def row_error(path: object, row: int, what: str) -> DataError:
    """Error for 1-based data row ``row`` of the CSV at ``path`` (line = row + 1, the header)."""
    return DataError(f"{path}: row {row} (line {row + 1}): {what}")
