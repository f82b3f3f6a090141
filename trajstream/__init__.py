"""trajstream: capture agent turns as events and turn the stream into learning.

The core, shared by every stage: settings, errors, topics, the one consume -> write -> commit loop
(``sink``), Kafka helpers (reading topics, dead letters), the local broker, process supervision
(`up`, `status`, `down`), the assembled-trajectory view, the one content renderer, and the CLI, the
one module that imports the stages. The stages live in top-level folders and
are installed as subpackages: ``trajstream.streams`` (assembly, scoring, enrichment),
``trajstream.consumers`` (sinks, stores, recall, the data API) and ``trajstream.trainer``. The event
contract, the codec and the emitter are the separate ``trajstream_sdk`` distribution (``sdk/python``).
"""

__version__ = "0.1.0"
