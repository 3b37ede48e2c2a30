"""deployment layer of btnet."""
