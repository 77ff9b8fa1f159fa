"""The Shop environment: a WebShop-style simulated store."""
