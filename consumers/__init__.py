"""Sinks that land the streams' output in ClickHouse and Milvus.

Not built yet (issue 4).
"""
