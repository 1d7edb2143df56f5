"""vtrial."""
