"""Where the paper is and which way the ink differs from it: the stage before the ink map, behind one call.

Most pictures need one measurement: their border is paper, and the ink lies beyond the brightness range the border
spans, on one side only (``find_polarity``). Three kinds hide their paper, and each is given a margin of paper back
(``paper_given_back``), so the later stages see what they see in every other picture - a digit with paper all round:

    a tight crop            its ink runs into the edge, so the border holds two narrow tones, paper and ink
                            (``edge_ink``); the paper is the one that holds more of the border
    a bold blurred digit    its strokes' soft edges reach the border, so the border's range spans the ink and the
    that fills its image    paper's own speckle passes for ink of the other side (``_turned_round``)
    a blurred digit whose   nothing lies beyond the border's range at all, though ink stands out: either of the
    border spans its ink    image's two tones may be the paper (``two_tones``)

A margin is kept only where it turns what stood out into plainly one-sided ink; otherwise the picture is read as
it came. Why each rule is there: docs/handwriting.md, 'A bold 1 stretched to fill its image read as light ink on
dark' and 'A dark digit on the edge of an unevenly lit page'.

    paper = find_paper(work, polarity="auto")
    paper.gray, paper.margin, paper.polarity, paper.one_sidedness, paper.notes
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from digitlab.recognition.ink import border, ink_map, percentiles

TWO_TONES = 0.25             # a border whose two tones lie this far apart (and beyond their spread) holds ink
ONE_SIDED_GIVEN_BACK = 0.8   # with paper given back, all but a tenth of what stands out must be ink to keep it
TONES_TIED = 0.02            # either tone given back makes the ink this nearly as one-sided: the border decides
PAPER_SIDE = 0.75            # a tone given back that holds this much of the border is judged with the border's range
MARGIN = 0.15                # paper given back around a tight crop, as a fraction of its longer side


@dataclass
class Paper:
    """The working image the ink is read from, and what was found about its paper."""

    gray: np.ndarray        # (H, W) the working gray image, with ``margin`` pixels of paper given back on each side
    margin: int             # 0: the paper was there all round, nothing given back
    polarity: str           # the polarity to read the ink by: as given, or as detected when asked for "auto"
    detected: str           # "dark-on-light" or "light-on-dark", as detected
    one_sidedness: float    # how one-sidedly the ink stands out from the paper (see ``find_polarity``)
    ink: tuple[np.ndarray, dict] | None = None   # ``ink_map(gray, polarity)`` where judging the paper needed it
                                                 # (a blank page's): made once, not again by the ink stage

    @property
    def notes(self) -> dict:
        """The measurements behind the decisions, for --explain and tests."""
        return {"one_sidedness": self.one_sidedness, "detected_polarity": self.detected,
                "paper_given_back": self.margin > 0}


def find_paper(gray: np.ndarray, polarity: str = "auto") -> Paper:
    """The paper of a working gray image (given back where the picture hides it) and the ink's polarity.
    ``polarity``: "auto" to read the ink by the detected polarity, or the one to read it by whatever is detected."""
    detected, one_sidedness = find_polarity(gray)
    given_back = None
    paper = paper_in_border(gray, one_sidedness)
    if paper is not None:
        given_back = paper_given_back(gray, [paper], at_least=max(ONE_SIDED_GIVEN_BACK, min(one_sidedness, 0.95)))
    elif one_sidedness >= ONE_SIDED_GIVEN_BACK:
        given_back = _turned_round(gray, detected)
    chosen = detected if polarity == "auto" else polarity
    ink = None
    if given_back is None and one_sidedness == 0:
        ink = ink_map(gray, chosen)
        if ink[0].any():
            # Ink stands out from its surroundings, yet nothing lies beyond the border's range: the border spans
            # the ink's tones too (a blurred digit that fills its image). Either of the image's two tones may be the
            # paper (a bold digit can cover more than half of it): the one around which the ink stands out on one
            # side is.
            given_back = paper_given_back(gray, two_tones(gray), at_least=ONE_SIDED_GIVEN_BACK)
    if given_back is None:
        return Paper(gray, 0, chosen, detected, one_sidedness, ink)
    padded, margin, detected, one_sidedness = given_back
    return Paper(padded, margin, detected if polarity == "auto" else polarity, detected, one_sidedness)


def find_polarity(gray: np.ndarray, paper: np.ndarray | None = None) -> tuple[str, float]:
    """Which way the ink differs from the paper, and how one-sided that is (1: all ink one way, 0: like noise, or
    nothing stands out at all).

    The image's border is nearly always paper, and under smooth uneven light the paper inside stays within the
    brightness range its border spans. Ink lies outside that range on one side only; noise, JPEG ringing and the
    texture of a photo lie on both. ``paper``: pixels known to be paper, whose range is taken instead of the
    border's (a margin given back is one tone, where the page it stands for spans a range).
    """
    if paper is None:
        paper = border(gray)
    low, high = percentiles(paper, [2, 98])
    darker = _excess(float(low) - 0.03 - gray)  # float32 differences, summed in float64
    lighter = _excess(gray - (float(high) + 0.03))
    total = darker + lighter
    if total <= 0:  # nothing beyond the paper's range either way: a blank page, which is not noise
        return "dark-on-light" if np.median(paper) >= 0.5 else "light-on-dark", 0.0
    polarity = "dark-on-light" if darker >= lighter else "light-on-dark"
    return polarity, float(abs(darker - lighter) / total)


def _excess(difference: np.ndarray) -> float:
    """The sum of the positive values: how far, in all, pixels lie beyond a limit (most lie within it)."""
    return float(difference[difference > 0].sum(dtype=np.float64))


# --- a border that holds ink --------------------------------------------------------------------------------------

def paper_in_border(gray: np.ndarray, one_sidedness: float) -> float | None:
    """The paper's brightness where the image's border holds ink as well as paper, or None where it looks all
    paper. ``one_sidedness``: how one-sidedly the ink stands out from the border's range (``find_polarity``)."""
    paper = edge_ink(gray)
    if paper is None and one_sidedness < ONE_SIDED_GIVEN_BACK:
        # Nothing or both sides stand out from the border's range, and the border may hold ink: blurred ink (two
        # tones with a wider spread), or so much that the border looks like noise (then the commoner tone is the
        # paper). Not where the ink is plainly one-sided: a page lit unevenly spans a range along its border that
        # can pass for two blurred tones.
        paper = edge_ink(gray, spread=1.5)
        if paper is None and 0 < one_sidedness < 0.5:
            paper = common_tone(gray)
    return paper


def edge_ink(gray: np.ndarray, spread: float = 3.0) -> float | None:
    """The paper's brightness when ink runs into the image's edge (a digit cropped tightly from a form or a scan),
    or None when the border is all paper.

    Such a border holds two tones far apart, each narrow: the paper, and the ink where strokes cross the edge. Uneven
    light spreads a plain border over a range too, but evenly, with no gap between two narrow tones; noise and a
    photo's texture put the tones close. The paper is the tone that holds more of the border.
    ``spread``: how far apart, in the sum of their interquartile ranges, the two tones' medians must lie."""
    ring = border(gray)
    on_dark_side, split = otsu(ring)
    dark, light = ring[on_dark_side], ring[~on_dark_side]
    if len(dark) == 0 or len(light) == 0:
        return None
    (d25, d50, d75), (l25, l50, l75) = percentiles(dark, [25, 50, 75]), percentiles(light, [25, 50, 75])
    gap = l50 - d50
    if gap < TWO_TONES or gap < spread * ((d75 - d25) + (l75 - l25)):
        return None
    paper = float(d50 if len(dark) >= len(light) else l50)
    # Strokes cross the edge in runs no longer than a side; the dark half of a page lit from one side runs along a
    # whole side and round two corners.
    outline = np.concatenate([gray[0], gray[1:, -1], gray[-1, -2::-1], gray[-2:0:-1, 0]])
    ink = (outline <= split) if paper == float(l50) else (outline > split)
    if ink.all():
        return None
    start = int(np.argmin(ink))  # begin the walk round the edge on paper, so no run is split in two
    ink = np.roll(ink, -start)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ink.astype(np.int8), [0]])))
    longest = int((edges[1::2] - edges[::2]).max(initial=0))
    return paper if longest <= max(gray.shape) else None


def otsu(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Which of ``values`` (brightness in [0, 1]) lie on the dark side of Otsu's threshold, and the threshold."""
    levels = np.clip(values * 255, 0, 255).astype(np.uint8)
    split, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return levels <= split, split / 255


def two_tones(gray: np.ndarray) -> tuple[float, float]:
    """The median brightness of the two tones Otsu's threshold splits an image into, the commoner first."""
    dark, _ = otsu(gray)
    tones = [float(np.median(gray[dark])) if dark.any() else float(gray.min()),
             float(np.median(gray[~dark])) if not dark.all() else float(gray.max())]
    return tuple(tones) if np.count_nonzero(dark) * 2 >= dark.size else (tones[1], tones[0])


def common_tone(gray: np.ndarray) -> float:
    """The brightness of the tone that covers more of the image: the paper, when ink covers less than half the
    picture, as it does in nearly every tight crop."""
    return two_tones(gray)[0]


# --- paper given back ---------------------------------------------------------------------------------------------

def paper_given_back(gray: np.ndarray, tones, at_least: float) -> tuple[np.ndarray, int, str, float] | None:
    """The image with a margin of whichever of ``tones`` the ink then stands out from most one-sidedly, with the
    margin, polarity and one-sidedness, or None if even that is below ``at_least``: the paper is kept given back
    only where it turns what stood out into ink of one side."""
    ring = border(gray)
    on_dark_side, split = otsu(ring)
    judged = []
    for tone in tones:
        padded, margin = with_margin(gray, tone)
        # The margin is one flat tone, but a page lit unevenly spans a range of brightness, and beyond the margin's
        # tone its own light would count as ink of the other side (then the ink's tone, around which all the page
        # stands out lighter, wins). A tone that holds most of the border is the paper there, and the range it
        # spans along the border is the paper's under its light; a tone holding less may be a blurred stroke's
        # ramp, which is no paper.
        side = ring[on_dark_side] if tone <= split else ring[~on_dark_side]
        paper = np.append(side, tone) if len(side) >= PAPER_SIDE * len(ring) else None
        judged.append((*find_polarity(padded, paper), padded, margin, tone))
    best = max(trial[1] for trial in judged)
    # A bold stroke stretched to fill its image covers as much of it as the paper does, and given either tone back
    # the other stands out plainly one-sided; then the paper is the tone that holds more of the border.
    edge = float(np.median(border(gray)))
    polarity, one_sidedness, padded, margin, _ = min(
        (trial for trial in judged if trial[1] >= best - TONES_TIED), key=lambda trial: abs(trial[4] - edge))
    return (padded, margin, polarity, one_sidedness) if one_sidedness >= at_least else None


def with_margin(gray: np.ndarray, paper: float) -> tuple[np.ndarray, int]:
    """The image with a margin of paper around it, and the margin's width: a tight crop given back the paper that
    was cut away, so the later steps see what they see in every other picture - a digit with paper all round."""
    margin = max(2, round(MARGIN * max(gray.shape)))
    return cv2.copyMakeBorder(gray, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=paper), margin


def _turned_round(gray: np.ndarray, detected: str) -> tuple[np.ndarray, int, str, float] | None:
    """Paper given back where the ink stood out plainly one-sided but the wrong way round, or None.

    A bold blurred digit that fills its image puts its strokes' soft edges into the border, so the border's range
    spans the ink and the paper's own speckle alone passes for ink of the other side, one-sidedly. Paper given back
    is kept only where it turns the ink round to the other side that plainly."""
    blurred = edge_ink(gray, spread=1.5)
    turned = None if blurred is None else paper_given_back(gray, [blurred], at_least=0.95)
    return turned if turned is not None and turned[2] != detected else None
