"""Hand segmentation: U-Net factory, tiling, sliding-window inference, training, metrics, draft masks."""
