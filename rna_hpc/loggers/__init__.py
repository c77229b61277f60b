"""Logging backends of our own (the others are Lightning's, built from ``conf/logger``)."""
