"""cli._suggest: the closest valid name."""

from __future__ import annotations

from cli._suggest import closest


def test_closest_suggests_a_near_name_and_nothing_for_a_far_one():
    names = ["sgd", "sgdm", "adam", "adamw", "dcao"]
    assert closest("adma", names) == "adam"
    assert closest("dcoa", names) == "dcao"
    assert closest("xyz", names) is None
