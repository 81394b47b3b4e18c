"""The Spark Structured Streaming consumer: Kafka's four topics -> Postgres `raw.*`, exactly once.

`schemas` and `parse` are pure (DataFrame in, DataFrame out); `sink` and
`spark/consume_streams.py` do the I/O; `jars` fetches the connector jars.
"""
