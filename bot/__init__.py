"""The matrix-hotline bot."""
