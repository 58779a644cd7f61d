"""The SimGAN networks and their training step: refiner, discriminator, history buffer,
losses, Algorithm 1's schedule and the SimGAN `keras.Model`."""
