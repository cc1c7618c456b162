"""The tiny pipelines' family names (models/tiny.py builds them), in a module light enough for the CLI's parser."""

FAMILIES = ("sd1", "sd2-v", "sdxl", "sd3", "flux", "flux-schnell", "flux2-klein", "z-image", "qwen-image")
FLOW_FAMILIES = ("sd3", "flux", "flux-schnell", "flux2-klein", "z-image", "qwen-image")
