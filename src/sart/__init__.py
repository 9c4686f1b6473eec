"""sart: routable bare-metal Kubernetes, as a library first."""

__version__ = "0.1.0"
