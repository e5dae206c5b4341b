"""streamtrain: online training of TensorFlow models on streaming Kafka data."""

__version__ = "0.1.0"

import time as _time

# When this process started (close enough: the package is imported first); start-up times count from here.
PROCESS_START = _time.monotonic()
