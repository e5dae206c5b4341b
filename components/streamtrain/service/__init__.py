"""What every component runs on: configuration, HTTP endpoints, logs, signals, the service loop."""
