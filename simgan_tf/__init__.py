"""simgan-tf: SimGAN (Shrivastava et al., CVPR 2017) in TensorFlow 2 / Keras 3.

Importing the package asks TensorFlow for its oneDNN CPU kernels (see `runtime`), so
import `simgan_tf` before `tensorflow`.
"""

from simgan_tf import runtime as _runtime

_runtime.request_onednn()
