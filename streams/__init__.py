"""The streams: from turn events to scored, enriched trajectories.

``assembly`` folds events into trajectories (Faust table ``assembly``), ``scoring`` computes AIR, credit
and rewards (``scoring.stage`` is the Faust side), ``enrichment`` extracts decisions and entities (its
worker, its extractors and re-enrichment), ``app`` wires them into one Faust app with the patched
consumer of ``ordered_consumer``, ``in_process`` runs them without Kafka, ``commands`` their CLI.
"""
