"""transforms shared by the medinpaint bundles."""
