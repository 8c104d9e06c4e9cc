"""Background work: each job runs in every replica and coordinates through PostgreSQL when it must."""
