"""OTLP GenAI spans to trajectory events: pure functions, no Kafka, no HTTP.

``spans`` reads OTLP protobuf into plain ``Span`` objects; ``kinds`` says what a span is (inference,
agent, tool); ``boundaries`` splits a trace into trajectories; ``content`` and its convention readers
(``genai``, ``legacy``, ``openinference``, ``vercel``, ``chat_format``) find a span's messages, which
``messages`` turns into the SDK's ``Message`` objects; ``model`` reads the model call; ``mapping`` puts
it together (``map_trace``). docs/otlp-mapping.md is the table of what maps to what.
"""
