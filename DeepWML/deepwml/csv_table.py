"""Reading the CSV files users make: Excel's UTF-8 BOM and semicolon lists included.

Why: a manifest saved by Excel as "CSV UTF-8" starts with a byte-order mark, so its first
column was read as "\\ufeffcase" and reported missing; in locales with a decimal comma Excel
separates columns with semicolons, and the whole header was read as one column.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .errors import ManifestError

#: Column separators recognised in the header line, most frequent wins (ties: the first).
DELIMITERS = (",", ";", "\t")


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Column names and rows of a CSV file (UTF-8 with or without BOM; , ; or tab separated).

    Column names and cells are stripped of surrounding spaces; missing cells read as "".
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ManifestError(path, f"is not UTF-8 text (byte {err.start}); save it as 'CSV UTF-8'") from None
    except OSError as err:
        raise ManifestError(path, f"cannot be read ({err.strerror or err})") from None
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = max(DELIMITERS, key=header.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        lines = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as err:
        raise ManifestError(path, f"is not a valid CSV file ({err})") from None
    if not lines:
        return [], []
    columns = [c.strip() for c in lines[0]]
    rows = [{c: (row[i].strip() if i < len(row) else "") for i, c in enumerate(columns)} for row in lines[1:]]
    return columns, rows
