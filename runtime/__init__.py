"""Grainbox runtime: the program on the box. Knobs to latent point to grains to Pure Data.

Never imports the trainer: it knows the model only through the artifact format (docs/model-format.md)
and Pd only through the OSC protocol (docs/osc.md).
"""

__version__ = "0.1.0"
