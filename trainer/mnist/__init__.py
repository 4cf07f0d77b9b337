"""The MNIST VAE: the check that the shared VAE core and training loop reproduce a published result.

The Grain-VAE has no published figures to compare with, so the same core (trainer/vae.py) and loop
(trainer/loop.py) also train Kingma & Welling's (2013) MNIST VAE, whose test ELBO and importance-weighted
log-likelihood are known. `python -m trainer mnist` trains and scores it; bench/mnist.py makes the table.

    data.py     the four IDX files, read strictly, and dynamic binarisation
    model.py    the MLP VAE with a Bernoulli decoder (the paper's preset and a faster-learning one)
    eval.py     the ELBO and the importance-weighted log-likelihood of test images, in nats
    plots.py    ELBO curves, samples, reconstructions and the 2-D latent manifold
"""
