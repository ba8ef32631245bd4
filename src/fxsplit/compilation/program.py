"""A piecewise-compiled graph that saves to bytes and loads again without compiling.

torch's ahead-of-time compile (``fxsplit.compile`` uses it) saves a compiled function
with its guards and bytecode, and asks the backend for a compiled graph that
serializes itself. :class:`PiecewiseProgram` is that graph: the stitching module, the
splitting pieces as their own code, and each compute piece's runner, whose compiled
versions are saved as the bytes Inductor gave them, each distinct one once.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Callable
from typing import Any

import torch
from torch.fx import Graph, GraphModule

from .. import _compat
from ..runtime.runner import PieceRunner
from ..runtime.stitching import install_direct_stitching


class PiecewiseProgram:
    """A split module whose compute pieces are :class:`PieceRunner` s, and how to save it.

    ``blob_of(compiled)`` gives the bytes of a compiled piece (Inductor's), or None
    for one that pickles as it is (a piece run as Python). ``load_blob`` turns bytes
    back into a compiled piece when the program is loaded.
    """

    def __init__(self, split: GraphModule, blob_of: Callable[[Any], bytes | None] | None = None) -> None:
        self.split = split
        self._blob_of = blob_of

    def __call__(self, *args: Any) -> Any:
        return self.split(*args)

    @classmethod
    def serialize_compile_artifacts(cls, program: PiecewiseProgram) -> bytes:
        split = program.split
        runners = {name: value for name, value in vars(split).items() if isinstance(value, PieceRunner)}
        # the stitching graph and splitting pieces pickle as code; compute pieces as runners
        graph = Graph()
        graph.output(graph.graph_copy(split.graph, {}))
        root = {name: module for name, module in split.named_children() if name not in runners}
        root.update({name: torch.nn.Module() for name in runners})
        stitching = GraphModule(root, graph, class_name="FxsplitStitching")
        blobs: dict[str, bytes] = {}
        buffer = io.BytesIO()
        _BlobPickler(buffer, program._blob_of, blobs).dump((stitching, runners))
        return pickle.dumps({"program": buffer.getvalue(), "blobs": blobs})

    @classmethod
    def deserialize_compile_artifacts(cls, data: bytes) -> PiecewiseProgram:
        saved = pickle.loads(data)
        store = _compat.persistent_compiler()
        loaded: dict[str, Any] = {}

        def load_blob(digest: str) -> Any:
            if digest not in loaded:
                if store is None:
                    raise RuntimeError("this torch cannot load Inductor's compiled pieces (no AOTCompiledArtifact)")
                loaded[digest] = store.deserialize(saved["blobs"][digest])
            return loaded[digest]

        stitching, runners = _BlobUnpickler(io.BytesIO(saved["program"]), load_blob).load()
        for name, runner in runners.items():
            del stitching._modules[name]
            stitching.__dict__[name] = runner
        install_direct_stitching(stitching)
        return cls(stitching)


class _BlobPickler(pickle.Pickler):
    """Saves each compiled piece that has bytes by the digest of its bytes."""

    def __init__(self, file: io.BytesIO, blob_of: Callable[[Any], bytes | None] | None, blobs: dict[str, bytes]):
        super().__init__(file)
        self._blob_of, self._blobs = blob_of, blobs

    def persistent_id(self, obj: Any) -> str | None:
        blob = self._blob_of(obj) if self._blob_of is not None and callable(obj) else None
        if blob is None:
            return None
        digest = hashlib.sha256(blob).hexdigest()
        self._blobs[digest] = blob
        return digest


class _BlobUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, load_blob: Callable[[str], Any]) -> None:
        super().__init__(file)
        self._load_blob = load_blob

    def persistent_load(self, digest: str) -> Any:
        return self._load_blob(digest)
