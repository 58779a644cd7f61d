"""simgan-tf: SimGAN (Shrivastava et al., CVPR 2017) in TensorFlow 2 / Keras 3."""

import setuptools

setuptools.setup(
    name="simgan-tf",
    version="0.1.0",
    description=(
        "SimGAN: learning from simulated and unsupervised images through "
        "adversarial training, in TensorFlow 2 / Keras 3."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["simgan_tf", "simgan_tf.*", "data_prep", "data_prep.*"]),
    py_modules=["train", "refine", "evaluate", "refine_images", "turing_test"],
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "tensorboard>=2.21,<2.22",
        "absl-py>=2.1",
        "numpy>=1.26",
        "pillow>=10.0",
        "scipy>=1.11",
        "h5py>=3.10",
        "tqdm>=4.66",
        "matplotlib>=3.8",
    ],
    extras_require={
        # selenium drives the Debian chromium + chromium-driver packages (.ci/run
        # installs them); nbclient + ipykernel execute the notebooks.
        "test": ["pytest>=8.0", "pytest-xdist>=3.5", "selenium>=4.20", "nbclient>=0.10",
                 "nbformat>=5.10", "ipykernel>=6.29"],
    },
)
