"""The Emarsys connector: the API client (auth, rate limit, retries, batching) and its simulator."""
