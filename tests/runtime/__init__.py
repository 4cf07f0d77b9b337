"""Tests of runtime/ (what runs on the box) and of the contract it shares."""
