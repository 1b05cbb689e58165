"""Real handwriting by writers MNIST never saw, split by writer: what the default recipe learns from beside MNIST,
and what the benchmarks choose and report on.

The files come from a folder of real handwriting (``realdata_dir``, else ``DIGITLAB_REALDATA``; nothing is shipped or
downloaded): each ``.npz`` holds ``images`` (uint8, bright ink on a dark background) and ``labels``, some also
``writer`` ids. They are read with ``allow_pickle=False``. Every writer belongs to one part, never an image alone,
so no writer's hand is both learned and reported:

    train    learned from
    choose   held out from training: recipes and settings are chosen here
    report   held out from both: only reported

    source     what                                         train            choose          report
    optdigits  UCI optical digits, original 32x32 bitmaps   all 30 writers   -               -  (UCI's other 13
               (the project's training writers)                                                 writers: sklearn)
    chars74k   Chars74K handwritten digits, tablet pens     -                writer % 5 = 1  the other writers
    hwd1000    HwD-1000 digits drawn on a screen            -                -               all (one writer)
    letters:
    chars74k-letters   Chars74K's letters, same writers     -                as chars74k digits
    femnist            NIST SD19 letters (FEMNIST)          writer % 5 >= 2  writer % 5 = 1  writer % 5 = 0
                                                            (the writer id checksummed)
    comnist            CoMNIST capitals (no writer ids)     -                -               all

Only sources whose terms let a model trained on them ship inside the package are ever trained on
(``TRAINED_ON``; the package's ``pretrained/DATA.md`` names them): Chars74K's terms are for academic use, CoMNIST's
CC BY-SA would bind the model, and HwD-1000 is one writer to report on, so those are only chosen and reported on.

scikit-learn's 8x8 digits (``handwriting.py``'s ``sklearn`` source) are UCI's 13 writer-independent test writers:
the optdigits population's held-out writers.

Letters written like digits are left out of the letters (``DIGIT_SHAPED``): a reader taught to refuse them is
taught to refuse real digits too.

    images, labels = load_digits("chars74k", "report")       # (N, 64, 64) uint8, (N,) int64
    letters, names = load_letters("femnist", "train")        # the letters not shaped like digits
    pool = training_pool(seed=0)                             # what a run learns from, in MNIST's form
"""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.errors import DataError
from digitlab.files import atomic_write, cache_root

PARTS = ("train", "choose", "report")
DIGIT_SOURCES = ("optdigits", "chars74k", "hwd1000")
LETTER_SOURCES = ("chars74k-letters", "femnist", "comnist")
TRAINED_ON = ("optdigits", "femnist")
FILES = {"optdigits": "optdigits_orig_32x32.npz", "chars74k": "chars74k_hnd_digits.npz",
         "hwd1000": "hwd1000_28x28.npz", "chars74k-letters": "chars74k_hnd_letters.npz",
         "femnist": "femnist_letters_28x28.npz", "comnist": "comnist_latin_upper.npz"}
# Letters many hands write as a digit: O o D Q as 0; I i l as 1; Z z as 2; S s as 5; G b as 6; B as 8; g q as 9.
DIGIT_SHAPED = "DOQoIilZzSsGbBgq"
# Digits drawn again as people hand them in (handwriting_render.CASES) for training; the page with a small digit on
# it is left out: it is the one case that costs a tenth of a second a drawing, and what it tests is the zoom.
TRAINING_CASES_DRAWN = 2         # drawings of each training digit, each in a case of its own, beside its clean form


def locate(realdata_dir: str | os.PathLike | None = None) -> Path:
    """The folder of real handwriting: ``realdata_dir``, else ``DIGITLAB_REALDATA``; DataError when neither holds
    the files."""
    folder = realdata_dir or os.environ.get("DIGITLAB_REALDATA")
    if not folder:
        raise DataError("real handwriting by other writers is not configured: point --realdata-dir or "
                        "DIGITLAB_REALDATA at a folder holding " + ", ".join(sorted(set(FILES.values()))))
    folder = Path(folder).expanduser()
    missing = sorted(name for name in set(FILES.values()) if not (folder / name).is_file())
    if missing:
        raise DataError(f"real handwriting not found in {folder} (missing: {', '.join(missing)})")
    return folder


def _read(source: str, realdata_dir: str | os.PathLike | None) -> dict[str, np.ndarray]:
    path = locate(realdata_dir) / FILES[source]
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz of arrays ({exc})") from None
    images = arrays.get("images")
    if images is None or images.dtype != np.uint8 or images.ndim != 3 or len(images) != len(arrays.get("labels", ())):
        raise DataError(f"{path}: expected uint8 images (N, H, W) and N labels")
    return arrays


def part_of(writer) -> str:
    """The part a writer belongs to, from the writer's id alone (a number, or a string checksummed)."""
    key = int(writer) if isinstance(writer, (int, np.integer)) else zlib.crc32(str(writer).encode())
    return "report" if key % 5 == 0 else "choose" if key % 5 == 1 else "train"


def image_parts(source: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Each image's part (see the module's table)."""
    count = len(arrays["labels"])
    if source == "optdigits":
        return np.full(count, "train")
    if source in ("hwd1000", "comnist"):
        return np.full(count, "report")
    parts = np.array([part_of(writer) for writer in arrays["writer"]])
    return parts if source in TRAINED_ON else np.where(parts == "train", "report", parts)


def _check(source: str, part: str, sources: tuple[str, ...]) -> None:
    if source not in sources:
        raise ValueError(f"unknown source {source!r}; choose one of: {', '.join(sources)}")
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of: {', '.join(PARTS)}")


def load_digits(source: str, part: str, realdata_dir: str | os.PathLike | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The digits of one part of ``source``: (N, h, w) uint8 bright ink on dark, and (N,) int64 labels."""
    _check(source, part, DIGIT_SOURCES)
    arrays = _read(source, realdata_dir)
    chosen = image_parts(source, arrays) == part
    return arrays["images"][chosen], arrays["labels"][chosen].astype(np.int64)


def load_letters(source: str, part: str, realdata_dir: str | os.PathLike | None = None,
                 digit_shaped: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The letters of one part of ``source``: (N, h, w) uint8 and (N,) one-character names; only those written
    like digits (``DIGIT_SHAPED``) when ``digit_shaped``, else all the others."""
    _check(source, part, LETTER_SOURCES)
    arrays = _read(source, realdata_dir)
    names = arrays["labels"].astype(str)
    chosen = (image_parts(source, arrays) == part) & (np.isin(names, list(DIGIT_SHAPED)) == digit_shaped)
    return arrays["images"][chosen], names[chosen]


# --- in MNIST's form ------------------------------------------------------------------------------------------------

def clean_form(image: np.ndarray) -> np.ndarray | None:
    """One glyph as its source gave it (bright on dark) -> (28, 28) uint8 by ``preprocess.to_mnist`` alone: cropped
    to its ink, strokes evened, fitted and centred. None when it holds no ink."""
    from digitlab.recognition.preprocess import to_mnist

    ink = image.astype(np.float32) / max(1, int(image.max()))
    rows, cols = np.nonzero(ink > 0.1)
    if not len(rows):
        return None
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    return np.round(to_mnist(crop) * 255).astype(np.uint8)


def drawn_form(image: np.ndarray, case: str, rng: np.random.Generator) -> np.ndarray | None:
    """One glyph drawn as ``case`` into a file (``handwriting_render.draw``) and read back by ``preprocess.prepare``
    as any user's file is: (28, 28) uint8, the very input the network gets, or None when reading refuses it."""
    from digitlab.datasets.handwriting_render import draw
    from digitlab.recognition.preprocess import prepare

    prepared = prepare(draw(image, case, rng))
    if len(prepared.glyphs) != 1:
        return None
    return np.round(prepared.glyphs[0].image * 255).astype(np.uint8)


def in_mnist_form(images: np.ndarray, drawings: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every glyph in its clean form and drawn ``drawings`` times, each time in another case: (M, 28, 28) uint8 and
    (M,) the index of the glyph each came from (a drawing the reader refuses is left out)."""
    from digitlab.datasets.handwriting_render import CASES

    cases = [case for case in CASES if case != "small-on-page"]
    rng = np.random.default_rng(seed)
    forms, sources = [], []
    for index, image in enumerate(images):
        found = [clean_form(image)] + [drawn_form(image, case, rng)
                                       for case in rng.choice(cases, size=drawings, replace=False)]
        for form in found:
            if form is not None:
                forms.append(form)
                sources.append(index)
    return np.stack(forms) if forms else np.zeros((0, 28, 28), np.uint8), np.array(sources, np.int64)


# --- what a training run learns from ---------------------------------------------------------------------------------

@dataclass
class Pool:
    """The training part of every source in MNIST's form: digits with their labels, and letters (not a digit)."""

    digits: np.ndarray      # (N, 28, 28) uint8
    labels: np.ndarray      # (N,) int64
    letters: np.ndarray     # (M, 28, 28) uint8


def _code_digest() -> str:
    """A digest of the code that turns a glyph into its MNIST form, so a pool made by other code is made again."""
    from digitlab.datasets import handwriting_render, render
    from digitlab.recognition import decode, glyphs, ink, mnist_form, paper, preprocess

    digest = hashlib.sha256()
    for module in (decode, preprocess, paper, ink, glyphs, mnist_form, render, handwriting_render):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def checksums(realdata_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """SHA-256 of each file a run learns from, recorded in its checkpoint so that the model names its data."""
    folder = locate(realdata_dir)
    return {FILES[source]: hashlib.sha256((folder / FILES[source]).read_bytes()).hexdigest()
            for source in TRAINED_ON}


def _pool_key(folder: Path, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{_code_digest()}".encode())
    for name in sorted(set(FILES.values())):
        digest.update(hashlib.sha256((folder / name).read_bytes()).digest())
    return digest.hexdigest()[:24]


def make_pool(realdata_dir: str | os.PathLike | None = None, seed: int = 0) -> Pool:
    """The training part of every digit and letter source, each glyph clean and drawn ``TRAINING_CASES_DRAWN``
    times as people hand digits in."""
    digits, labels, letters = [], [], []
    for offset, source in enumerate(DIGIT_SOURCES):
        if source not in TRAINED_ON:
            continue
        images, source_labels = load_digits(source, "train", realdata_dir)
        forms, index = in_mnist_form(images, TRAINING_CASES_DRAWN, seed * 100 + offset)
        digits.append(forms)
        labels.append(source_labels[index])
    for offset, source in enumerate(LETTER_SOURCES):
        if source not in TRAINED_ON:
            continue
        images, _ = load_letters(source, "train", realdata_dir)
        letters.append(in_mnist_form(images, 1, seed * 100 + 50 + offset)[0])
    return Pool(np.concatenate(digits), np.concatenate(labels), np.concatenate(letters))


def training_pool(realdata_dir: str | os.PathLike | None = None, seed: int = 0,
                  cache: Path | None = None) -> Pool:
    """``make_pool``, kept in the per-user cache (digitlab's cache folder, ``writers/``) under a key of the files,
    the seed and the code that drew them, so that a run after the first starts at once."""
    folder = locate(realdata_dir)
    path = (cache or cache_root() / "writers") / f"pool-{_pool_key(folder, seed)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as kept:
                return Pool(kept["digits"], kept["labels"], kept["letters"])
        except (OSError, ValueError, KeyError, zlib.error):
            pass  # a damaged cache file is made again
    pool = make_pool(folder, seed)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, digits=pool.digits, labels=pool.labels, letters=pool.letters)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    return pool
