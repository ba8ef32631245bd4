"""Cutting a graph: which ops split it (``ops``), which node goes to which piece (the
public splitters, ``splitters``), the split plan read from that assignment (``plan``,
with what it reads of values in ``values`` and the pieces' order and regions in
``order``), and the lazy pieces and stitching module built from the plan (``pieces``,
``lazy``, ``structure``)."""
