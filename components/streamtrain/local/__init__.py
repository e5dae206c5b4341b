"""Local tooling: the embedded Kafka-protocol broker and its TLS front."""
