"""The web console: pages served by the data API, the JSON they read, and the ClickHouse queries behind it."""
