"""The run archive: what the store holds, read as a whole.

`index` (one summary line per run in store/index.jsonl, appended as each run finishes),
`trends` (series per configuration, plotted as inline SVG), `web` (`chaos serve`),
`compare` (`chaos compare`) and `shrink` (`chaos shrink`: delta debugging of a failing fault
schedule). Each is one module; none of them changes a run directory.
"""
