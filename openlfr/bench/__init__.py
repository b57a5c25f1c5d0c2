"""Benchmarks on real data, shared by the CLI (`openlfr bench ...`) and `benchmarks/`."""
