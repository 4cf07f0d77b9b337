"""Sub-commands of `python -m trainer`: one module each (see trainer/__main__.py)."""
