"""unitarget: one multi-task model for podcast ads and promotions."""

__version__ = "0.1.0"
