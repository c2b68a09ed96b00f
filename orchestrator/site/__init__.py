"""One-site change: preflight, drain, switch, post-check, undrain; rollback on failure."""
