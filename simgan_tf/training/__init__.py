"""Training a run: the train library, the fit-like loop, callbacks and summaries, and
checkpointing."""
