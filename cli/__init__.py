"""The `explain` command line."""
