"""Kafka clients, micro-batches, readers and the log's continuity: the topic side of the data path."""
