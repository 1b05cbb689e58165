"""formats: the one path from a Prediction to JSON, a flat record, CSV and a table line."""

import csv
import io
import json

from digitlab.recognition.formats import COLUMNS, STYLES, json_line, record
from digitlab.recognition.predict import DigitResult, Prediction


def seven() -> Prediction:
    digit = DigitResult(7, 0.9912345, [(7, 0.9912345), (1, 0.005), (9, 0.001)], [0.0] * 7 + [0.99] + [0.0] * 2,
                        (3, 4, 20, 22))
    return Prediction("a/seven.png", digits=[digit])


def number() -> Prediction:
    digits = [DigitResult(d, 0.9, [(d, 0.9)], [0.1] * 10, (10 * i, 0, 8, 9)) for i, d in enumerate((2, 0))]
    digits.append(DigitResult(None, 0.4, [(6, 0.4)], [0.1] * 10, (20, 0, 8, 9), reason="unsure"))
    return Prediction("n.png", multi=True, digits=digits, reason="1 of 3 digits unsure (unsure)")


def test_record_is_flat_with_every_column():
    row = record(seven())
    assert tuple(row) == COLUMNS
    assert row["digit"] == 7 and row["confidence"] == 0.991235 and row["top3"].startswith("7:0.9912 1:0.0050")
    assert row["boxes"] == "3x4x20x22" and row["number"] is None and row["error"] is None
    multi = record(number())
    assert multi["digit"] is None and multi["number"] is None and multi["digits"] == "2 0 ?" and multi["top3"] == ""
    failed = record(Prediction("x.png", error="not an image"))
    assert failed["error"] == "not an image" and failed["confidence"] is None and failed["digits"] == ""


def test_csv_rows_are_the_records_as_text():
    text = io.StringIO()
    write = STYLES["csv"](text, 0)
    for prediction in (seven(), number(), Prediction("x.png", error="not an image")):
        write(prediction)
    rows = list(csv.DictReader(io.StringIO(text.getvalue())))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 3
    assert rows[0]["digit"] == "7" and rows[0]["confidence"] == "0.991235" and rows[0]["number"] == ""
    assert rows[2]["error"] == "not an image" and rows[2]["digit"] == ""
    no_header = io.StringIO()
    STYLES["csv"](no_header, 0, header=False)(seven())
    assert no_header.getvalue() == text.getvalue().splitlines(keepends=True)[1]


def test_json_and_table_lines():
    assert json.loads(json_line(seven())) == seven().to_dict()
    text = io.StringIO()
    STYLES["table"](text, 12)(number())
    header, line = text.getvalue().splitlines()
    assert header.startswith("path") and "2 0 ?" in line and "unsure" in line
