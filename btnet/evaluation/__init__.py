"""evaluation layer of btnet."""
