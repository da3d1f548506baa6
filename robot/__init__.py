"""Warning Robot: automated anti-fraud warning calls and texts."""

__version__ = "0.1.0"
