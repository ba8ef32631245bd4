"""Running compiled pieces: the runners that dispatch each piece on size."""
