"""The stream processor: Faust workers around the pure core (adapters only)."""
