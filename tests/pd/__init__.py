"""Tests of the Pd patch: the real Pd, headless, in batch mode and in real time."""
