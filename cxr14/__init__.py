"""cxr14: the NIH ChestX-ray14 workflow as an importable package."""
