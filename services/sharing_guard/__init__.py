"""The sharing guard."""
