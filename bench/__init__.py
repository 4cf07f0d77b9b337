"""Benchmarks that print the figures in README.md, one module each, run from the repository root:

    .venv/bin/python -m bench.decode models/factory.ts

Each imports the installed project (runtime, trainer, desktop; `make venv` installs it editable) and, where
it drives the real Pd or runtime, the test harness in tests/, which `-m` from the root makes importable.
`make bench` runs them all, one after another.
"""
