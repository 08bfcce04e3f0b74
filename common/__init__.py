"""medinpaint's shared package: networks, transforms, losses, metrics, engines and sample data.

Bundles under ``bundles/`` import this package; it never imports a bundle.
"""

__version__ = "0.1.0"
