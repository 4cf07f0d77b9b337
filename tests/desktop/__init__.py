"""Tests of desktop/: the demo that plays the whole instrument."""
