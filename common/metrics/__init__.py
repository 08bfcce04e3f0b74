"""metrics shared by the medinpaint bundles."""
