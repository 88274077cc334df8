"""Our nerfstudio pipelines. Each calls `nerfstudio_hooks.install()` when it is built, which makes
nerfstudio's checkpoint loads and viewer start safe for our runs: nerfstudio builds the pipeline
before it loads a checkpoint or opens a viewer."""
