"""spectra.utils.checks: the closest valid name and the "did you mean" hint."""

from __future__ import annotations

from spectra.utils.checks import closest, did_you_mean


def test_closest_suggests_a_near_name_and_nothing_for_a_far_one():
    names = ["sgd", "sgdm", "adam", "adamw", "dcao"]
    assert closest("adma", names) == "adam"
    assert closest("dcoa", names) == "dcao"
    assert closest("xyz", names) is None
    assert did_you_mean("adma", names) == " Did you mean 'adam'?"
    assert did_you_mean("xyz", names) == ""
