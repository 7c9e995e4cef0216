"""Item features: the feature store written by extraction and the object models read."""
