"""fxsplit inside other systems: :mod:`fxsplit.integrations.vllm` puts fxsplit's splitter into vLLM."""
