"""explain: the --explain figure's words are whole."""

from digitlab.recognition.explain import _headline
from digitlab.recognition.predict import Prediction


def test_a_long_reason_is_wrapped_in_the_title_not_cut():
    reason = "not a digit: 80% sure it is none of the ten (nearest digit 8 at 15%)"  # 69 characters
    title = _headline(Prediction("x.png", reason=reason))
    assert " ".join(title.split()) == reason and max(len(line) for line in title.splitlines()) <= 60
