"""Pure-Python core: mapping, normalization, hashing, values, validation, batching. No Beam here."""
