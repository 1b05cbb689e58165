"""An output file of predictions that grows in whole chunks and can be continued: ``digitlab predict --out``.

A long job (an archive of scans) must survive Ctrl-C, a kill or a crash without losing what it has done, and without
leaving a file that a reader cannot parse. So results are buffered and written a chunk at a time: JSON Lines and CSV
are appended with one write of whole lines followed by ``fsync``, so a kill in the middle of a write can cut at most
the last line, which ``resume`` cuts off before going on. Parquet, whose footer must come last, is written to a
temporary file beside the output, which replaces the output (``files.atomic_write``) when the job ends or is
interrupted; a kill keeps the previous file. ``resume`` reads which inputs the file holds already, so a second run
skips them; a file that exists is never replaced unless ``overwrite`` says so.

    with ResultsFile("out.jsonl", resume=True) as out:      # "out.csv", "out.parquet" (pyarrow) too
        todo = [p for p in paths if p not in out.done]
        for prediction in recognizer.iter_predict(todo):
            out.write(prediction)

The lines and rows are made by ``recognition.formats``, the same code that prints them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

from digitlab.files import atomic_write
from digitlab.recognition.formats import COLUMNS, STYLES, arrow_schema, record
from digitlab.recognition.predict import Prediction

SUFFIXES = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet",
            ".pq": "parquet"}


def kind_for(path: str | os.PathLike, asked: str | None = None) -> str:
    """The file's format: the one asked for ("json", "csv"), else the one its suffix names."""
    kind = SUFFIXES.get(Path(path).suffix.lower())
    if asked is not None:
        if kind == "parquet":
            raise ValueError(f"{path}: a Parquet file name, but --{asked} asks for {asked.upper()}")
        return asked
    if kind is None:
        raise ValueError(f"{path}: say the output format with --json or --csv, or name the file .jsonl, .csv or "
                         f".parquet")
    return kind


class ResultsFile:
    """Predictions appended to ``path`` in chunks of ``chunk_size`` (or every ``seconds``); ``done`` holds the
    paths it held already when ``resume`` continued it."""

    def __init__(self, path: str | os.PathLike, kind: str | None = None, resume: bool = False,
                 overwrite: bool = False, chunk_size: int = 256, seconds: float = 2.0):
        self.path = Path(path)
        self.kind = kind_for(path, kind)
        self.chunk_size, self.seconds = chunk_size, seconds
        self.done: set[str] = set()
        self.written = 0
        self._pending: list[Prediction] = []
        self._last_flush = time.monotonic()
        exists = self.path.exists()
        if exists and not self.path.is_file():
            raise ValueError(f"{self.path}: not a regular file; name a file for --out")
        if exists and not (resume or overwrite):
            raise ValueError(f"{self.path} exists: --resume to skip the inputs it holds and add the rest, "
                             f"--overwrite to replace it")
        self._continuing = exists and resume and not overwrite
        self._started = False
        self._writer = self._before = None
        if self.kind == "parquet":
            self._read_parquet()
        elif self._continuing:
            self._continue_text()

    def _start(self) -> None:
        """Make the file (or, continuing one, nothing): only once there is something to write, so a job that
        fails before its first answer (a model the workers cannot load) leaves no file that would need --resume."""
        self._started = True
        if self.kind == "parquet":
            fd, self._tmp = _temporary_beside(self.path)
            os.close(fd)
            self._writer = self._pq.ParquetWriter(self._tmp, self._schema)
            if self._before is not None and self._before.num_rows:
                self._writer.write_table(self._before)
            self._before = None
        elif not self._continuing:
            header = ",".join(COLUMNS) + "\n" if self.kind == "csv" else ""
            atomic_write(self.path, lambda tmp: Path(tmp).write_text(header, encoding="utf-8"))

    # --- writing ------------------------------------------------------------------------------------------------

    def write(self, prediction: Prediction) -> None:
        self._pending.append(prediction)
        if len(self._pending) >= self.chunk_size or time.monotonic() - self._last_flush >= self.seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered predictions as one chunk, and make it durable.

        The chunk leaves the buffer before it is written: a Ctrl-C that lands after the write must not leave it
        there for ``close`` to write a second time. One that lands before loses the chunk from this run only;
        ``resume`` does those inputs again."""
        if not self._started:
            self._start()
        pending, self._pending = self._pending, []
        if pending and self.kind == "parquet":
            self._writer.write_table(self._pa.Table.from_pylist([record(p) for p in pending], schema=self._schema))
        elif pending:
            text = io.StringIO()
            write = STYLES["csv"](text, 0, header=False) if self.kind == "csv" else STYLES["json"](text, 0)
            for prediction in pending:
                write(prediction)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                data = text.getvalue().encode("utf-8")
                while data:  # one write in practice; a short write (a full disk, a signal) goes on where it stopped
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
        self.written += len(pending)
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Write what is buffered (an empty output is made too: a valid file with no answers); a Parquet file
        is finished and takes the output's name."""
        self.flush()
        if self.kind == "parquet" and self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
            atomic_write(self.path, lambda tmp: os.replace(self._tmp, tmp))

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        if kind is None or issubclass(kind, KeyboardInterrupt) or self._started:
            self.close()  # an error before the first answer makes no file

    # --- continuing a file ----------------------------------------------------------------------------------------

    def _continue_text(self) -> None:
        data = self.path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]
        if len(complete) < len(data):  # a write cut short by a kill: its last line is incomplete
            os.truncate(self.path, len(complete))
        text = complete.decode("utf-8", errors="strict")
        if self.kind == "csv":
            rows = csv.reader(io.StringIO(text))
            header = next(rows, None)
            if header is None:
                self.path.write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
            elif tuple(header) != COLUMNS:
                raise ValueError(f"{self.path}: its header is not digitlab predict's ({','.join(COLUMNS)}); "
                                 f"--overwrite to replace it")
            kept = self._first_of_each([row for row in rows if row], lambda row: row[0])
            if kept is not None:
                lines = io.StringIO()
                csv.writer(lines, lineterminator="\n").writerows([COLUMNS, *kept])
                self._rewrite(lines.getvalue())
            return
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                entries.append((json.loads(line)["path"], line))
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{self.path}, line {number}: not a line digitlab predict --json wrote; "
                                 f"--overwrite to replace the file") from None
        kept = self._first_of_each(entries, lambda entry: entry[0])
        if kept is not None:
            self._rewrite("".join(line + "\n" for _, line in kept))

    def _first_of_each(self, rows: list, path_of) -> list | None:
        """Fill ``done`` with the paths of ``rows``; return the rows without repeats (the first answer to each
        input) when some input appears more than once, else None. A file written by an older digitlab, or copied
        together from two runs, can hold an input twice; going on from it keeps each input once."""
        kept = []
        for row in rows:
            if path_of(row) not in self.done:
                self.done.add(path_of(row))
                kept.append(row)
        return kept if len(kept) < len(rows) else None

    def _rewrite(self, text: str) -> None:
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    def _read_parquet(self) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ModuleNotFoundError:
            raise ValueError("a .parquet output needs pyarrow: pip install pyarrow (or write .jsonl or .csv)") \
                from None
        self._pa, self._pq = pa, pq
        self._schema = arrow_schema()
        if self._continuing:
            try:
                self._before = pq.read_table(self.path).select(list(COLUMNS)).cast(self._schema)
            except (pa.ArrowException, KeyError, ValueError) as exc:
                raise ValueError(f"{self.path}: not a Parquet file digitlab predict wrote ({exc}); "
                                 f"--overwrite to replace it") from None
            paths = self._before.column("path").to_pylist()
            self.done = set(paths)
            if len(self.done) < len(paths):  # the first answer to each input, as for a text file
                first = {path: index for index, path in reversed(list(enumerate(paths)))}
                self._before = self._before.take(sorted(first.values()))

    def __del__(self) -> None:  # an exception before close: the temporary Parquet file is not left behind
        tmp = getattr(self, "_tmp", None)
        if tmp and getattr(self, "_writer", None) is not None:
            self._writer.close()
            if os.path.exists(tmp):
                os.unlink(tmp)


def _temporary_beside(path: Path) -> tuple[int, str]:
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
