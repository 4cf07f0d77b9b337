"""Tests of trainer/: data, the Grain-VAE and the MNIST VAE, training, metrics, export."""
