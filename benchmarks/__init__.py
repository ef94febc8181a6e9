"""cartreg benchmark harness: ratios of cartreg to its anchors, measured side by side."""
