"""Running compiled pieces: the runners that dispatch each piece on size (``runner``,
``sizes``, ``dynamic``), the stitching that calls them directly (``stitching``), the
inputs they expect (``signature``, ``layout``), and pieces replayed as CUDA graphs
(``cudagraphs``)."""
