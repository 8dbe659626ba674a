"""Teaching: the explain table and JSON (shapes, padding, parameter arithmetic)."""
