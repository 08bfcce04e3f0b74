"""losses shared by the medinpaint bundles."""
