"""The sinks and what reads their stores back.

The ClickHouse sink (``clickhouse_sink``, rows from ``clickhouse_rows``, the store and its migrations in
``clickhouse_store``) and the Milvus sink (``milvus_sink``, ``milvus_store``, ``embedding``,
``summaries``), run with the data API (``api``) by the data worker (``data_worker``); ``recall`` (recall,
outcome prediction, counterfactuals, tool recommendations) and ``access`` (through the API or the
stores) read them back; ``commands`` holds their CLI.
"""
