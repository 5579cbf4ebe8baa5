"""A receiver for tests and the demo: the ``sink`` command (not used by the daemon)."""
