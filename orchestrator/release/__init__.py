"""Release bundles: a payload directory plus a manifest of every file's sha256."""
