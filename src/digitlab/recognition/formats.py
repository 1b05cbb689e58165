"""One Prediction -> a JSON object, a flat record, a CSV row or a table line: the one formatting path.

``digitlab predict`` prints with these writers, ``--out`` writes files with them, and the Ray Data path
(``recognition.cluster``) makes its rows with ``record``, so an answer reads the same wherever it was made.

    write = STYLES["json"](sys.stdout, width=0)     # "json", "csv" or "table"
    write(prediction)                               # one line
    record(prediction)                              # {"path": ..., "digit": 7, "confidence": 0.99, ...} (COLUMNS)
"""

from __future__ import annotations

import csv
import json
from typing import Any, Callable, TextIO

from digitlab.recognition.predict import Prediction

# The flat record's fields, in order: the CSV header, the Parquet schema, the Ray rows' columns.
COLUMNS = ("path", "digit", "number", "confidence", "top3", "digits", "boxes", "reason", "error")


def record(result: Prediction) -> dict[str, Any]:
    """A flat record of ``COLUMNS``: numbers stay numbers (``None`` where there is none), lists become short
    strings (``top3`` "7:0.9912 1:0.0051 ...", ``digits`` "2 0 ? 6", ``boxes`` "XxYxWxH ...")."""
    digits = " ".join("?" if d.digit is None else str(d.digit) for d in result.digits)
    return {
        "path": result.source,
        "digit": result.digit,
        "number": result.number if result.multi else None,
        "confidence": None if result.confidence is None else round(result.confidence, 6),
        "top3": " ".join(f"{d}:{p:.4f}" for d, p in result.digits[0].top3) if len(result.digits) == 1 else "",
        "digits": digits,
        "boxes": " ".join("x".join(str(v) for v in d.box) for d in result.digits),
        "reason": result.reason,
        "error": result.error,
    }


def arrow_schema():
    """``record``'s columns as an Arrow schema (pyarrow is imported here, only by those who write Parquet)."""
    import pyarrow as pa

    types = {"digit": pa.int64(), "confidence": pa.float64()}
    return pa.schema([(name, types.get(name, pa.string())) for name in COLUMNS])


def json_line(result: Prediction) -> str:
    return json.dumps(result.to_dict())


def json_writer(out: TextIO, width: int) -> Callable[[Prediction], None]:
    return lambda result: print(json_line(result), file=out)


def csv_writer(out: TextIO, width: int, header: bool = True) -> Callable[[Prediction], None]:
    rows = csv.writer(out, lineterminator="\n")
    if header:
        rows.writerow(COLUMNS)

    def write(result: Prediction) -> None:
        row = record(result)
        row["confidence"] = "" if row["confidence"] is None else f"{row['confidence']:.6f}"
        rows.writerow(["" if row[name] is None else row[name] for name in COLUMNS])
    return write


def table_writer(out: TextIO, width: int) -> Callable[[Prediction], None]:
    width = min(max(width, 4), 60)
    print(f"{'path':<{width}}  {'answer':>6}  {'conf':>5}  top-3 / note", file=out)

    def write(result: Prediction) -> None:
        if result.error:
            answer, confidence, note = "-", "", f"error: {result.error}"
        else:
            answer = (result.number if result.multi else _blank(result.digit)) or "?"
            confidence = "" if result.confidence is None else f"{result.confidence:.0%}"
            top = "  ".join(f"{d} {p:.0%}" for d, p in result.digits[0].top3) if len(result.digits) == 1 else \
                " ".join("?" if d.digit is None else str(d.digit) for d in result.digits)
            note = top + (f"  ({result.reason})" if result.reason else "")
        path = result.source if result.source.isprintable() else repr(result.source)[1:-1]  # one line per file
        path = path if len(path) <= width else "..." + path[-(width - 3):]
        print(f"{path:<{width}}  {answer:>6}  {confidence:>5}  {note}", file=out)
    return write


STYLES = {"table": table_writer, "json": json_writer, "csv": csv_writer}


def _blank(value) -> str:
    return "" if value is None else str(value)
