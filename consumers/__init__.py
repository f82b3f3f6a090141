"""Sinks that land the streams' output in ClickHouse and Milvus, and what is built on them: recall,
outcome prediction, counterfactuals, tool recommendations and the data API (see README.md)."""
