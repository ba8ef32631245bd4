"""Compiling pieces: the piecewise backend, compilers, dedup, the on-disk cache, and
the report and dumps of a compilation."""
