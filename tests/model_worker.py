"""One fresh process calling fxsplit.compile, for the whole-model tests; prints what
happened as JSON on its last line.

Usage: python model_worker.py CACHE_DIR MODEL [--sizes 8] [--load-only] [--calls 11,1] [--layers 2]
MODEL is "synthetic" (the built-in model, 2 layers unless --layers) or a tiny HuggingFace
architecture ("llama"), or PATH.py:CLASS for a model defined in a file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import torch
from torch._dynamo.utils import counters

import fxsplit
from fxsplit.tools import models


def build(spec: str, layers: int = 2):
    """(model, splitting ops, example kwargs, inputs of n tokens as kwargs, output -> tensor)"""
    if spec == "synthetic":
        model, _ = models.build(layers)

        def inputs(n: int) -> dict:
            ids, positions = models.example_inputs(model.config, n)
            return {"input_ids": ids, "positions": positions}

        return model, [models.ATTENTION_OP_NAME], inputs, lambda out: out
    if ":" in spec:  # a model class in a file of its own, for source changes
        path, name = spec.split(":")
        loaded = importlib.util.spec_from_file_location(Path(path).stem, path)
        module = importlib.util.module_from_spec(loaded)
        sys.modules[Path(path).stem] = module
        loaded.loader.exec_module(module)
        torch.manual_seed(0)
        model = getattr(module, name)().eval()
        return model, fxsplit.DEFAULT_SPLITTING_OPS, lambda n: {"x": torch.ones(n, 8)}, lambda out: out
    sys.path.insert(0, str(Path(__file__).parent))
    from zoo import tiny_decoder

    model = tiny_decoder(spec, layers=2)

    def token_inputs(n: int) -> dict:
        generator = torch.Generator().manual_seed(n)
        return {"input_ids": torch.randint(0, 128, (2, n), generator=generator), "use_cache": False}

    return model, fxsplit.DEFAULT_SPLITTING_OPS, token_inputs, lambda out: out.logits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cache_dir")
    parser.add_argument("model")
    parser.add_argument("--sizes", default="")
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument("--calls", default="11")
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    model, ops, inputs, tensor_of = build(args.model, args.layers)
    pythons = []  # child Python processes started from here on (Inductor's CPU probe starts them)
    popen_init = subprocess.Popen.__init__

    def counted(self, command, *rest, **options):
        if isinstance(command, (list, tuple)) and command and command[0] == sys.executable:
            pythons.append(command)
        popen_init(self, command, *rest, **options)

    subprocess.Popen.__init__ = counted
    sizes = [int(s) for s in args.sizes.split(",") if s]
    result: dict = {}
    with torch.no_grad():
        compiled = fxsplit.compile(
            model,
            example_kwargs=inputs(8),
            splitting_ops=ops,
            compile_sizes=sizes,
            cache_dir=args.cache_dir,
            load_only=args.load_only or None,
        )
        result["after_compile"] = {
            "graphs": counters["stats"]["unique_graphs"],
            "aot": counters["aot_autograd"]["total"],
        }
        outputs, types = [], []
        for n in (int(c) for c in args.calls.split(",")):
            out = compiled(**inputs(n))
            torch.testing.assert_close(tensor_of(out), tensor_of(model(**inputs(n))), rtol=1e-4, atol=1e-4)
            outputs.append(round(float(tensor_of(out).double().sum()), 3))
            types.append(type(out).__name__)
    report = compiled.report
    result.update(
        origin=report.origin,
        compiler_calls=report.compiler_calls,
        cache_hits=report.cache_hits,
        graphs=counters["stats"]["unique_graphs"],
        aot=counters["aot_autograd"]["total"],
        outputs=outputs,
        types=types,
        fallback_calls=compiled.fallback_calls,
        python_children=len(pythons),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
