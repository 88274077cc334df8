"""The application layer: the clipnerf commands, the demo, the shipped pretrained models, mesh
export and the nerfstudio method registrations."""
