"""engines shared by the medinpaint bundles."""
