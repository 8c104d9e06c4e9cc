"""Storage adapter: the customer's data lake, reached through the Blob endpoint."""
