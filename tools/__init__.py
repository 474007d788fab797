"""Benchmarks and the GPU run script: tools around the library, run from the checkout's root
(python -m tools.bench_train, python -m tools.bench_sim, python -m tools.bench_study, bash tools/gpu_train.sh)."""
