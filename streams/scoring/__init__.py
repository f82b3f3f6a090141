"""Scoring a trajectory: AIR intermediate rewards (``air``), credit over LLM calls (``credit``), named
reward functions and the RULER-style judge (``rewards``), and the Faust-side stage that joins an assembled
version with its enrichment and emits the scored record (``stage``)."""
