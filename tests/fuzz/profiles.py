"""Hypothesis profiles for the fuzz tests, in one place (loaded by conftest.py).

``ci`` (the default) keeps the whole directory near a minute on two slow cores; ``long`` is for
``make fuzz`` (HYPOTHESIS_PROFILE=long), a hundred times the examples. No deadline: a slow case on a
loaded machine is not a bug; a hang is, and pytest's timeout catches it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
_SCALE = {"ci": 1, "long": 100}
_COMMON = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                         HealthCheck.data_too_large])  # fmt: skip


def load() -> None:
    settings.register_profile("ci", _COMMON, max_examples=200)
    settings.register_profile("long", _COMMON, max_examples=200 * _SCALE["long"])
    settings.load_profile(PROFILE)


def examples(ci: int) -> settings:
    """A property's own budget: ``ci`` examples in the ci profile, scaled up in the long one."""
    return settings(max_examples=ci * _SCALE.get(PROFILE, 1))
