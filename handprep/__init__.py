"""handprep: hand-wrist radiograph preprocessing, hand segmentation and bone-age regression."""
__version__ = "0.1.0"
