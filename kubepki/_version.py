"""kubepki's version, kept in one place for packaging and backups."""

__version__ = "0.1.0"
