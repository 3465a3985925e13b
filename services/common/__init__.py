"""Code shared by the registry, scheduler and executor services."""
