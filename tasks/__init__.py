"""Task kit, example tasks and pipelines."""
