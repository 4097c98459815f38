"""What every service puts between a caller and its code: log-safe rendering, the HTTP
edge (authentication before the body, size limits, strict parameters and JSON, security
headers) and the identifier policy for ids a person types."""
