"""models layer of btnet."""
