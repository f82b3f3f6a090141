"""Faust stream processors: assembly, AIR rewards, credit assignment and enrichment triggers.

Not built yet (issue 3). The events they consume are defined in schemas/ and published by trajstream.sdk.
"""
