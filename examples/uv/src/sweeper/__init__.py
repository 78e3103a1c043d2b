"""A toy training program for the uv example."""
