"""Optimisation reports mined from the corpus: tools, instructions, skills (``trajstream optimise ...``)."""
