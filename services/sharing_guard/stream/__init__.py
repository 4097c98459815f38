"""The stream processor: the guard worker (a Faust app running its own input loop) and its
adapters around the pure core."""
