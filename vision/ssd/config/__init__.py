"""Prior-box configurations, one module per family, with the original toolkit's module names."""
