"""Enrichment: the decisions and entities of each finished trajectory, extracted after the fact.

``model`` holds the typed result and its Avro record, ``transcript`` the text an LLM reads,
``heuristic`` a deterministic extractor that needs no network, ``llm`` the extractor that asks an
OpenAI-compatible model (with bounded concurrency, timeouts, retries and validated output), ``worker``
the enrichment worker (a ``trajstream.sink.BatchSink``) and ``reenrich`` the requests of `trajstream
enrich --since`.
"""
