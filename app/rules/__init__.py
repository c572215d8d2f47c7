"""Rules: the filter language (FQL) and the per-user rule state machines."""
