"""Index adapter: PostgreSQL through asyncpg (search, change feed and consistency rest on it)."""
