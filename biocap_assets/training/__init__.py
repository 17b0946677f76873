"""BioCAP training with open_clip: the dual-projector model, data, text mixing, the loop."""
