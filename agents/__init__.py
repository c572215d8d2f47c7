"""Faust agents: thin shells that decode, call the pure core, write tables and send."""
