"""Where a run keeps its part head (no torch: the command line reads this at start-up)."""

PART_HEAD_FILE = "part_head.safetensors"
"""The part head's file, beside the stage-1 run's config.yml (`clipnerf train-parts` writes it)."""
