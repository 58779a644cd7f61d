"""Using a trained refiner: the SavedModel export and model card, refining a TFRecord split,
and refining folders of image files."""
