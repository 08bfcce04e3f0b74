"""networks shared by the medinpaint bundles."""
