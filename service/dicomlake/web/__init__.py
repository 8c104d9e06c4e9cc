"""HTTP layer (Starlette): turns requests into calls on features, and errors into responses."""
