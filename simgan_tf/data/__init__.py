"""Data: the TFRecord schema, its writer and reader, validation of data folders, and the
built-in simulator datasets."""
