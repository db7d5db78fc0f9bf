"""Plumbing every layer uses: config loading and validation, packaged resources, file io,
the device mesh, device-aware defaults, provenance and media (no method, model or stage
names here)."""
