"""Compiling pieces: the piecewise backend (``backend``) and what it calls, in order:
which pieces share (``dedup``), one version compiled, loaded or saved (``versions``),
the versions compiled side by side (``jobs``, ``workers``, ``graph_bytes``,
``examples``), the on-disk cache (``cache``); ``fxsplit.compile`` (``model``,
``layers``, ``artifact``, ``program``); and the report and dumps of a compilation."""
