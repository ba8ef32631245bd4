"""Cutting a graph: lazy modules, splitting-op matching, the split plan, pieces and
their structural keys, and the public splitters."""
