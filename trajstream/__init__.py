"""trajstream: capture agent turns as events and turn the stream into learning."""

__version__ = "0.1.0"
