"""eventcron: sends scheduled events to the Inbound Events API, on time and exactly once."""

__version__ = "0.1.0"
