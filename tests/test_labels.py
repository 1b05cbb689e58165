"""labels: what a model's metadata says it answers and how its outputs are read (torch-free)."""

import pytest

from digitlab.labels import temperature_of


def test_the_temperature_is_the_calibrations_or_one_and_never_a_bad_number():
    assert temperature_of({}) == 1.0 and temperature_of({"calibration": None}) == 1.0
    assert temperature_of({"calibration": {"temperature": 0.5563}}) == 0.5563
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be positive"):
            temperature_of({"calibration": {"temperature": bad}})
