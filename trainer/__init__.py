"""Grainbox trainer: audio grains, the Grain-VAE, the MNIST reference VAE, and model export.

Runs on the workstation. The box never imports this package; what crosses over is the exported
TorchScript artifact described in docs/model-format.md.
"""

__version__ = "0.1.0"

SAMPLE_RATE = 22_050
GRAIN_SIZE = 1024
