"""Helpers the tests share: fake boxes, OSC peers, the Pd harness, model fixtures."""
