"""Scoring a trajectory: AIR intermediate rewards, credit over LLM calls, and named reward functions."""
