"""The result schema and the on-disk journal of a run."""
