"""The fuzz tests' hypothesis profile (profiles.py): ``ci`` by default, HYPOTHESIS_PROFILE=long for more."""

from __future__ import annotations

from tests.fuzz import profiles

profiles.load()
