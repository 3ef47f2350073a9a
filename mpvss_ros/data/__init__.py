"""Cityscapes-style sequences: reading, writing and procedural generation."""
