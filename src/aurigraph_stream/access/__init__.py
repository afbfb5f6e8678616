"""Who may connect and publish, and how much: tokens, rate limits, trusted proxies."""
