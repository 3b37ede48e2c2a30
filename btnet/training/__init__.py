"""training layer of btnet."""
