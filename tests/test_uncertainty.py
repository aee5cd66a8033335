"""Intervals and paired differences: the figures the report gives beside every accuracy."""
import numpy as np
import pytest

from compress.measure.uncertainty import NOISE_P, paired_difference, wilson_interval


def test_wilson_interval_is_sound_at_the_edges_and_narrows_with_more_images():
    lo, hi = wilson_interval(0, 4)
    assert lo == 0.0 and 0.4 < hi < 0.6                     # 0 of 4 right does not mean the model is always wrong
    lo, hi = wilson_interval(358, 360)
    assert lo < 358 / 360 < hi <= 1.0
    assert (hi - lo) > np.subtract(*wilson_interval(3580, 3600)[::-1])   # ten times the images, narrower
    assert wilson_interval(0, 0) is None


def test_two_images_of_360_are_inside_the_noise_and_forty_of_1000_are_not():
    a = np.ones(360, bool)
    b = a.copy()
    b[:2] = False
    d = paired_difference(a, b)
    assert (d.net_images, d.lost, d.images) == (-2, 2, 360) and d.inside_noise and d.p_value == pytest.approx(0.5)
    a = np.zeros(1000, bool)
    a[:500] = True
    b = a.copy()
    b[500:540] = True
    d = paired_difference(a, b)
    assert d.net_images == 40 and d.points == pytest.approx(4.0) and d.p_value < NOISE_P and not d.inside_noise


def test_only_discordant_images_count_and_the_images_must_be_the_same():
    a = np.array([True, False, True, False])
    assert paired_difference(a, a).to_json() == {"images": 4, "gained": 0, "lost": 0, "p_value": 1.0,
                                                 "net_images": 0, "inside_noise": True}
    with pytest.raises(ValueError, match="different images"):
        paired_difference(a, a[:3])
