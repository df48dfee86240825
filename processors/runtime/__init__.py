"""Runtimes that drive the pure processor cores: the only part of ``processors`` allowed to import a
stream framework (checked by import-linter, ``make lint``)."""
