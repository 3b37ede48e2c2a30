"""data layer of btnet."""
