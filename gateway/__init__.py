"""The ingestion gateway: HTTP in, durable Kafka records out, for agents in any runtime.

- ``POST /v1/traces``: OTLP/HTTP (protobuf or JSON, gzip). Spans go to the ``otlp.spans`` topic keyed by
  trace id; the streams' trace stage turns them into trajectories.
- ``POST /v1/events`` and ``POST /v1/trajectories``: trajstream's own records, as JSON.
- ``POST /v1/chat/completions``: a recording proxy in front of an OpenAI-compatible upstream.

A 2xx answer means the broker acknowledged every accepted record (idempotent producer, acks=all).
"""
