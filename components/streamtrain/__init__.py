"""streamtrain: online training of TensorFlow models on streaming Kafka data."""

__version__ = "0.1.0"
