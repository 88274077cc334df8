"""clipnerf_ns: CLIP-NeRF (text- and image-driven NeRF editing) as a nerfstudio plugin."""

__version__ = "0.1.0"
