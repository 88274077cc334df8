"""CLIP behind one small interface (`ClipEncoder`), and the project's compact offline CLIP."""
