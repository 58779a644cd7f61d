"""A progress bar per trained network: what `evaluate.py` shows while it trains.

The evaluation trains several networks (an estimator per training split, a realism
classifier per scored split) for minutes each; `fit_progress(steps, description)` is a
Keras callback that draws one tqdm bar over a `fit`'s steps, with the running loss.
"""

from __future__ import annotations

import keras
import tqdm


class FitProgress(keras.callbacks.Callback):
    """A tqdm bar over the `steps` training steps of one `fit` call.

    Args:
      steps: the fit's steps (`steps_per_epoch` of a one-epoch fit).
      description: the bar's label, e.g. "gaze estimator on refined".
    """

    def __init__(self, steps: int, description: str):
        super().__init__()
        self.steps = steps
        self.description = description
        self.bar = None

    def on_train_begin(self, logs=None):
        self.bar = tqdm.tqdm(total=self.steps, desc=self.description, unit="step",
                             dynamic_ncols=True, leave=True)

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras calls this once per execution: `batch` is
        # the index of the last step done, so the bar is set, not incremented.
        self.bar.update(batch + 1 - self.bar.n)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4g}", refresh=False)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def fit_callbacks(progress: bool, steps: int, description: str) -> list:
    """`[FitProgress(steps, description)]` when `progress`, else `[]`."""
    return [FitProgress(steps, description)] if progress else []
