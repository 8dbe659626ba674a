"""The framework-free engine: shapes, padding and parameter counts resolved once into a Plan."""
