"""People's own labelled images as a data set, in MNIST's form: what `eval --data`, `finetune` and `train --data` read.

Three layouts are recognised, from what the folder holds (``find_files``):

    CSV            a ``.csv`` file named directly, or DIR/labels.csv: rows of ``path,label`` (a header such as
                   ``file,label``, as `digitlab export-samples` writes, is skipped); paths are relative to the CSV's
                   folder. A labels.csv wins over the two layouts below.
    class folders  DIR/0/ ... DIR/9/ and, optionally, DIR/not_a_digit/ (torchvision's ImageFolder); a class folder's
                   sub-folders belong to its class. Files beside the class folders are not labelled and are reported.
    file names     any other folder (and its sub-folders): each file's label is read from its name
                   (``label_from_name``, which lists its rules and refuses a name they read two ways).

Every image is read by ``preprocess.prepare``, the step the Recognizer reads every image with, so a model learns from
exactly the 28x28 input it will be shown; the result is kept as uint8, as MNIST stores its digits. Hidden files and
``.json`` files (the sidecars `digitlab serve --collect` writes beside each drawing) are ignored. Nothing stops the
run: an unreadable file, an image preprocessing refuses (a blank page, more than one digit) and a missing or bad
label each become one line of ``LabelledImages.skipped``.

The prepared images are cached in one ``.npz`` file per folder under the cache directory (no pickle), keyed per file
by its size and modification time and, for the whole file, by ``preprocessing_version``: a second run decodes only
what is new or changed.

    data = load_folder("my_digits/")           # .images (N, 28, 28) uint8, .labels (N,), .paths, .skipped
    print(skipped_report(data.skipped))
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.errors import one_line
from digitlab.files import atomic_write, cache_root
from digitlab.labels import CLASS_FOLDERS, DIGITS, NOT_A_DIGIT, NOT_A_DIGIT_FOLDER
from digitlab.recognition.decode import ImageError
from digitlab.recognition.facts import POLARITIES, SUFFIXES
from digitlab.recognition.preprocess import prepare

NOT_A_DIGIT_LABEL = 10                    # the label of DIR/not_a_digit/ images; digits are labelled by themselves
CSV_NAME = "labels.csv"
IGNORED_SUFFIXES = (".json",)              # sidecars written beside collected drawings
LAYOUTS = ("csv", "class folders", "file names")
UNREADABLE, REFUSED, BAD_LABEL = "unreadable", "refused", "bad label"   # the kinds of Skipped

# The rules of ``label_from_name``, in the order they are tried: (what the rule says, its pattern on the name
# without its extension). A separator is one of _ - . or a space.
NAME_RULES = (
    ("starts with the digit and a separator (3_anything)", re.compile(r"([0-9]+)[-_. ]")),
    ("ends with a separator and the digit (anything_3)", re.compile(r".*[-_. ]([0-9]+)$")),
    ("ends with the digit (anything3)", re.compile(r".*?([0-9]+)$")),
)


@dataclass
class Skipped:
    """A file left out, and why: ``kind`` is "unreadable", "refused" (preprocessing found no one digit in it) or
    "bad label"."""

    path: str
    kind: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "reason": self.reason}


@dataclass
class LabelledImages:
    """A folder's usable images in MNIST's form, their labels, and everything that was left out."""

    root: Path                                   # the folder (or the CSV) that was named
    layout: str                                  # one of LAYOUTS
    images: np.ndarray                           # (N, 28, 28) uint8, bright ink on dark, as MNIST stores them
    labels: np.ndarray                           # (N,) int64: the digit, or NOT_A_DIGIT_LABEL
    paths: list[str]                             # each image's file, relative to the folder
    skipped: list[Skipped] = field(default_factory=list)
    bytes: int = 0                               # total size of the used files
    sha256: str = ""                             # over each used file's path, label and content digest
    decoded: int = 0                             # files read this time (the rest came from the cache)

    def __len__(self) -> int:
        return len(self.labels)

    def summary(self) -> dict[str, Any]:
        """What a checkpoint records about the data it learnt from."""
        return {"folder": str(self.root), "layout": self.layout, "images": len(self), "bytes": self.bytes,
                "sha256": self.sha256, "skipped": len(self.skipped),
                "per_class": {name: int((self.labels == label).sum()) for label, name in enumerate(class_names())
                              if (self.labels == label).any()}}


def class_names() -> list[str]:
    """What each label value means: "0" ... "9", then "not a digit"."""
    return [*DIGITS, NOT_A_DIGIT]


# --- which files, with which labels -----------------------------------------------------------------------------------

@dataclass
class Entry:
    """One file of the data set: where it is, its name relative to the folder, and its label (None: ``problem``)."""

    path: Path
    name: str
    label: int | None
    problem: str | None = None


def label_from_name(name: str) -> tuple[int | None, str | None]:
    """(label, None), or (None, why not) for a file name in the file-names layout.

    The rules, tried in this order on the name without its extension (NAME_RULES): it starts with a digit and a
    separator (``3_anything``); it ends with a separator and a digit (``anything_3``); its last character is a digit
    (``anything3``, ``3``). A name is read by every rule that applies; when they name different digits (``3_five_5``,
    ``3_scan2``) the name is ambiguous and refused, as is a name whose only number has several digits
    (``img_0042``: a file number, not a label). A separator is one of ``_ - .`` or a space.
    """
    stem = Path(name).stem
    found: list[tuple[str, str]] = []
    for rule, pattern in NAME_RULES:
        match = pattern.match(stem)
        if match:
            found.append((rule, match.group(1)))
    labels = {number for _, number in found if len(number) == 1}
    if len(labels) == 1:
        return int(labels.pop()), None
    if len(labels) > 1:
        readings: dict[str, str] = {}  # each digit with the first rule that read it
        for rule, number in found:
            if len(number) == 1:
                readings.setdefault(number, rule.split(" (")[0])
        said = " but ".join(f"{number} (it {rule})" for number, rule in readings.items())
        return None, f"ambiguous name: it reads {said}; rename it as 3_anything or put it in a class folder"
    if found:
        return None, (f"no label in the name: its number {found[0][1]} has {len(found[0][1])} digits, a label has "
                      f"one (a file number?); name it as 3_anything or put it in a class folder")
    return None, "no label in the name: no digit at its start or end; name it as 3_anything or put it in a class folder"


def label_from_text(text: str) -> int | None:
    """A label as written in a CSV: a digit 0-9, or "not_a_digit" / "not a digit"; None for anything else."""
    value = text.strip()
    if value in DIGITS:
        return int(value)
    if value.lower().replace("_", " ") == NOT_A_DIGIT:
        return NOT_A_DIGIT_LABEL
    return None


def _listed(folder: Path) -> list[Path]:
    """The files under ``folder``, sorted, leaving out hidden files and folders and ignored sidecars."""
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative) or not path.is_file():
            continue
        if path.suffix.lower() in IGNORED_SUFFIXES:
            continue
        found.append(path)
    return sorted(found)


def _is_image_name(path: Path) -> str | None:
    """None for a file named as an image, else why it is not read."""
    if path.suffix.lower() in SUFFIXES:
        return None
    return f"not an image file name (a {path.suffix or 'missing'} extension; images end in {', '.join(SUFFIXES)})"


def find_files(path: str | os.PathLike) -> tuple[Path, str, list[Entry]]:
    """(the folder file names are relative to, the layout, one Entry per file). ValueError when ``path`` is neither a
    folder nor a CSV file, or a CSV that cannot be read."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ValueError(f"{path}: a file; --data takes a folder of images or a .csv of path,label")
        return path.parent, "csv", _csv_entries(path)
    if not path.is_dir():
        raise ValueError(f"{path}: no such folder")
    if (path / CSV_NAME).is_file():
        return path, "csv", _csv_entries(path / CSV_NAME)
    classes = [d for d in sorted(path.iterdir()) if d.is_dir() and d.name in CLASS_FOLDERS]
    if classes:
        return path, "class folders", _class_entries(path)
    entries = []
    for file in _listed(path):
        name = file.relative_to(path).as_posix()
        label, problem = label_from_name(file.name)
        entries.append(Entry(file, name, label, _is_image_name(file) or problem))
    return path, "file names", entries


def _class_entries(root: Path) -> list[Entry]:
    entries = []
    for file in _listed(root):
        name = file.relative_to(root).as_posix()
        top = file.relative_to(root).parts[0]
        if len(file.relative_to(root).parts) == 1:
            entries.append(Entry(file, name, None, "not in a class folder (0-9 or not_a_digit)"))
        elif top not in CLASS_FOLDERS:
            entries.append(Entry(file, name, None, f"in folder {top!r}, which is not a class (0-9 or not_a_digit)"))
        else:
            label = NOT_A_DIGIT_LABEL if top == NOT_A_DIGIT_FOLDER else int(top)
            entries.append(Entry(file, name, label, _is_image_name(file)))
    return entries


def _csv_entries(csv_path: Path) -> list[Entry]:
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{csv_path}: cannot be read as a CSV of path,label ({one_line(exc, 80)})") from None
    root = csv_path.parent
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ValueError(f"{csv_path}: not a CSV file ({one_line(exc, 80)})") from None
    for line, row in enumerate(rows, start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if line == 1 and len(row) >= 2 and label_from_text(row[1]) is None and not (root / row[0].strip()).is_file():
            continue  # a header: no label, and no file of that name
        where = f"{csv_path.name} line {line}"
        if len(row) != 2 or not row[0].strip():
            entries.append(Entry(root, where, None, f"{where}: expected two columns, path,label; found {len(row)}"))
            continue
        file = (root / row[0].strip()).expanduser()
        name = os.path.relpath(file, root).replace(os.sep, "/")
        label = label_from_text(row[1])
        problem = None if label is not None else f"{where}: the label {row[1].strip()!r} is not 0-9 or not_a_digit"
        if name in seen:
            problem = f"{where}: listed again (first on line {seen[name]}); the first is used"
            name = f"{name} ({where})"
        else:
            seen[name] = line
        entries.append(Entry(file, name, label, problem or _is_image_name(file)))
    return entries


# --- preprocessing, and its cache -------------------------------------------------------------------------------------

def preprocessing_version() -> str:
    """A digest of everything that decides a file's 28x28 form: the decoding and preprocessing source and the
    libraries they call. When any of it changes, cached images are prepared again."""
    import cv2
    import PIL

    from digitlab.recognition import decode, facts, glyphs, ink, mnist_form, paper, preprocess

    digest = hashlib.sha256()
    for module in (facts, decode, preprocess, paper, ink, glyphs, mnist_form):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(f"opencv {cv2.__version__} pillow {PIL.__version__} numpy {np.__version__}".encode())
    return digest.hexdigest()[:16]


def cache_file(root: Path, layout: str, polarity: str) -> Path:
    """Where the prepared images of a folder are kept."""
    key = hashlib.sha256(f"{root.resolve()}|{layout}|{polarity}".encode()).hexdigest()[:20]
    return cache_root() / "folders" / f"{key}.npz"


def _read_cache(path: Path, version: str) -> tuple[dict[str, dict], np.ndarray]:
    """(per-file records, their images) from a cache file; nothing when it is missing, stale or damaged."""
    empty: tuple[dict[str, dict], np.ndarray] = ({}, np.zeros((0, 28, 28), np.uint8))
    if not path.is_file():
        return empty
    try:
        with np.load(path, allow_pickle=False) as stored:
            index = json.loads(str(stored["index"]))
            images = np.asarray(stored["images"])
    except (OSError, ValueError, KeyError, EOFError, json.JSONDecodeError):
        return empty  # a cache is only ever a shortcut: a damaged one is made again
    if (not isinstance(index, dict) or index.get("version") != version or images.dtype != np.uint8
            or images.shape[1:] != (28, 28) or not isinstance(index.get("files"), dict)):
        return empty
    records = {}
    for name, record in index["files"].items():
        row = record.get("row") if isinstance(record, dict) else None
        if isinstance(row, int) and not 0 <= row < len(images):
            continue
        records[name] = record
    return records, images


def _write_cache(path: Path, version: str, records: dict[str, dict], images: list[np.ndarray]) -> None:
    index = json.dumps({"version": version, "files": records})
    stacked = np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as out:
            np.savez(out, index=np.array(index), images=stacked)
    try:
        atomic_write(path, write)
    except OSError:
        pass  # a cache that cannot be written costs the next run time, not this run its result


def _prepare_file(path: Path, polarity: str) -> tuple[dict, np.ndarray | None]:
    """Read one file and bring it to MNIST's form: (its record, its uint8 (28, 28) image or None)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"kind": UNREADABLE, "reason": f"cannot be read ({one_line(exc.strerror or exc, 80)})"}, None
    record: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest()}
    try:
        prepared = prepare(data, polarity=polarity)
    except ImageError as exc:
        return record | {"kind": UNREADABLE, "reason": one_line(exc, 160)}, None
    except MemoryError:
        return record | {"kind": UNREADABLE, "reason": "out of memory while decoding the image"}, None
    except Exception as exc:  # noqa: BLE001 - one strange file must not lose the rest of the folder
        return record | {"kind": UNREADABLE, "reason": f"could not be read ({type(exc).__name__}: "
                                                        f"{one_line(exc, 120)})"}, None
    if prepared.reason or not prepared.glyphs:
        return record | {"kind": REFUSED, "reason": prepared.reason or "no digit found"}, None
    return record, np.round(prepared.glyphs[0].image * 255).astype(np.uint8)


def _new_or_changed(wanted: list[Entry], records: dict[str, dict]
                    ) -> tuple[dict[str, tuple[int, int]], list[Entry], list[Skipped]]:
    """Which of ``wanted`` must be prepared again: (each file's (size, mtime_ns), the files whose cache record is
    missing or was made from another size or time, a Skipped for each file that cannot even be looked at).

    A file's size and modification time are what say that its cached image still holds."""
    stats: dict[str, tuple[int, int]] = {}
    to_read: list[Entry] = []
    unreadable: list[Skipped] = []
    for entry in wanted:
        try:
            info = entry.path.stat()
        except OSError as exc:
            reason = f"cannot be read ({one_line(exc.strerror or exc, 80)})"
            unreadable.append(Skipped(entry.name, UNREADABLE, reason))
            continue
        stats[entry.name] = (info.st_size, info.st_mtime_ns)
        record = records.get(entry.name)
        if not (record and (record.get("size"), record.get("mtime_ns")) == stats[entry.name]):
            to_read.append(entry)
    return stats, to_read, unreadable


def _prepare_files(entries: list[Entry], polarity: str,
                   threads: int | None) -> dict[str, tuple[dict, np.ndarray | None]]:
    """``_prepare_file``'s result for each of ``entries``, by name, read on ``threads`` threads (by default one a
    CPU, at most four)."""
    fresh: dict[str, tuple[dict, np.ndarray | None]] = {}
    if entries:
        workers = threads or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            for entry, result in zip(entries, pool.map(lambda e: _prepare_file(e.path, polarity), entries)):
                fresh[entry.name] = result
    return fresh


def load_folder(path: str | os.PathLike, polarity: str = "auto", cache: bool = True,
                threads: int | None = None) -> LabelledImages:
    """The labelled images under ``path`` (a folder or a CSV), prepared as prediction prepares them.

    ``polarity`` is preprocessing's (``auto`` detects it per image). With ``cache`` the prepared images are read
    from and written to the cache file, so only new or changed files are decoded. ValueError when ``path`` is no
    data set at all; every problem with a single file goes into ``skipped``.
    """
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, not {polarity!r}")
    root, layout, entries = find_files(path)
    skipped = [Skipped(e.name, BAD_LABEL, e.problem) for e in entries if e.problem is not None]
    wanted = [e for e in entries if e.problem is None]
    version = preprocessing_version()
    where = cache_file(Path(path).expanduser(), layout, polarity)
    records, cached_images = _read_cache(where, version) if cache else ({}, None)

    stats, to_read, unreadable = _new_or_changed(wanted, records)
    skipped += unreadable
    fresh = _prepare_files(to_read, polarity, threads)

    images, labels, names, kept_records, kept_images = [], [], [], {}, []
    digest = hashlib.sha256()
    total = 0
    for entry in wanted:
        if entry.name not in stats:
            continue
        if entry.name in fresh:
            record, image = fresh[entry.name]
        else:
            record = records[entry.name]
            image = cached_images[record["row"]] if isinstance(record.get("row"), int) else None
        record = {k: v for k, v in record.items() if k != "row"}
        record["size"], record["mtime_ns"] = stats[entry.name]
        if image is not None:
            record["row"] = len(kept_images)
            kept_images.append(image)
        kept_records[entry.name] = record
        if image is None:
            if "kind" in record:
                skipped.append(Skipped(entry.name, record["kind"], record["reason"]))
            continue
        images.append(image)
        labels.append(entry.label)
        names.append(entry.name)
        total += record["size"]
        digest.update(f"{entry.name}\t{entry.label}\t{record['sha256']}\n".encode())
    if cache and (fresh or set(records) != set(kept_records)):
        _write_cache(where, version, kept_records, kept_images)
    skipped.sort(key=lambda s: s.path)
    return LabelledImages(root=Path(path).expanduser(), layout=layout,
                          images=np.stack(images) if images else np.zeros((0, 28, 28), np.uint8),
                          labels=np.array(labels, np.int64), paths=names, skipped=skipped, bytes=total,
                          sha256=digest.hexdigest(), decoded=len(fresh))


# --- for a model ------------------------------------------------------------------------------------------------------

def targets(labels: np.ndarray, classes: list[str] | tuple[str, ...]) -> np.ndarray:
    """Each label as the index of the model output that names it (``classes``: the model's class list), or -1 where
    the model has no such output (a "not a digit" image for a network with ten outputs)."""
    names = [str(c) for c in classes]
    lookup = np.array([names.index(name) if name in names else -1 for name in class_names()], np.int64)
    return lookup[labels] if len(labels) else np.zeros(0, np.int64)


def for_model(data: LabelledImages, classes: list[str] | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray,
                                                                                   list[str], list[Skipped]]:
    """(images, output indices, paths) of the images a model with ``classes`` can be taught or scored on, and a
    Skipped for each that it cannot (its label names no output of the model)."""
    wanted = targets(data.labels, classes)
    keep = wanted >= 0
    dropped = [Skipped(name, BAD_LABEL, f"labelled {class_names()[label]!r}, which this model has no output for")
               for name, label, kept in zip(data.paths, data.labels, keep) if not kept]
    return data.images[keep], wanted[keep], [p for p, k in zip(data.paths, keep) if k], dropped


def skipped_report(skipped: list[Skipped], total: int | None = None, limit: int = 20) -> str:
    """The files left out, one line each (the first ``limit``), after a line counting them by kind; '' if none."""
    if not skipped:
        return ""
    kinds: dict[str, int] = {}
    for item in skipped:
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
    counted = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
    of = f" of {total}" if total is not None else ""
    lines = [f"skipped {len(skipped)}{of} files ({counted}):"]
    lines += [f"  {item.path}: {item.kind}: {item.reason}" for item in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more (--json lists them all)")
    return "\n".join(lines)
