"""Importers: histories written by other tools, turned into our op dicts (DESIGN §4).

Each importer module exposes `sniff(head: str) -> bool` (head = the first ~4 KB of the file,
recognising the format by content, never by extension) and `load(path) -> History`.
`chaos.history.importers.detect.load_any` picks one: jsonl (ours), porcupine, jepsen-edn.
"""
