"""The web chat gateway."""
