"""pipeline layer of btnet."""
