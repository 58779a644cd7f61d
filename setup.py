"""simgan-tf: SimGAN (Shrivastava et al., CVPR 2017) in TensorFlow 2 / Keras 3."""

import re

import setuptools

with open("simgan_tf/__init__.py", encoding="utf-8") as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.MULTILINE).group(1)

DESCRIPTION = (
    "simgan-tf trains SimGAN's refiner (Shrivastava et al., \"Learning from Simulated and "
    "Unsupervised Images through Adversarial Training\", CVPR 2017) in TensorFlow 2 and "
    "Keras 3: a fully convolutional network that makes synthetic images look real while "
    "keeping their labels, trained with a local (per-patch) adversarial loss, L1 "
    "self-regularization and a history of refined images. It ships the paper's gaze "
    "(UnityEyes to MPIIGaze) and hand depth (NYU hand) setups, converters for those "
    "datasets, folders of images and the Kaggle eye-gaze files, built-in simulators to "
    "try it in minutes on a CPU, exact resume, multi-worker training, the paper's "
    "evaluation, and a SavedModel export that TF Serving loads."
)

setuptools.setup(
    name="simgan-tf",
    version=VERSION,
    description=("SimGAN: learning from simulated and unsupervised images through "
                 "adversarial training, in TensorFlow 2 / Keras 3."),
    long_description=DESCRIPTION,
    long_description_content_type="text/plain",
    license="Apache-2.0",
    # TensorFlow 2.21 supports Python 3.10 to 3.13; simgan-tf is tested on 3.11.
    python_requires=">=3.10,<3.14",
    packages=setuptools.find_packages(include=["simgan_tf", "simgan_tf.*", "simgan_tf_cli",
                                               "data_prep", "data_prep.*"]),
    entry_points={"console_scripts": [
        "simgan-train=simgan_tf_cli.train:run",
        "simgan-refine=simgan_tf_cli.refine:run",
        "simgan-evaluate=simgan_tf_cli.evaluate:run",
        "simgan-refine-images=simgan_tf_cli.refine_images:run",
        "simgan-turing-test=simgan_tf_cli.turing_test:run",
    ]},
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
        # TensorFlow with its CUDA libraries (Linux, NVIDIA GPUs).
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        "notebooks": ["jupyter>=1.0", "ipykernel>=6.29"],
        # selenium drives the Debian chromium + chromium-driver packages (.ci/run
        # installs them); nbclient + ipykernel execute the notebooks.
        "test": ["pytest>=8.0", "pytest-xdist>=3.5", "selenium>=4.20", "nbclient>=0.10",
                 "nbformat>=5.10", "ipykernel>=6.29"],
    },
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
