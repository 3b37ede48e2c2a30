"""io layer of btnet."""
