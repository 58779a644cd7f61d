"""The built-in procedural simulators: eyes (35x55 grayscale) and hand depth images, each
with a synthetic and a labelled "real" domain."""
