"""simgan-tf: SimGAN (Shrivastava et al., CVPR 2017) in TensorFlow 2 / Keras 3.

Importing the package asks TensorFlow for its oneDNN CPU kernels (see `runtime`), so
import `simgan_tf` before `tensorflow`.
"""

__version__ = "0.2.0"  # the one version: setup.py, config.json and the model card read it

from simgan_tf import runtime as _runtime  # noqa: E402

_runtime.request_onednn()
