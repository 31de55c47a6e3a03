"""Histories: the JSON Lines format of DESIGN §4, its writer, reader and importers."""
from chaos.history.model import COLUMNS, OPEN, History, Op

__all__ = ["COLUMNS", "OPEN", "History", "Op"]
