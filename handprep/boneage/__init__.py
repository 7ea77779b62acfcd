"""Bone-age regressor: packed datasets + labels, the ResNet34 model, training, evaluation, prediction."""
