"""One module per architecture; see harness.models.registry."""
