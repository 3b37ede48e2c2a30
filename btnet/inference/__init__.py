"""inference layer of btnet."""
