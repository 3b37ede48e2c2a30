"""losses layer of btnet."""
