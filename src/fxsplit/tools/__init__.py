"""What people run: the command line, benchmarks, the synthetic model, capture and
``fxsplit inspect``'s presentation."""
