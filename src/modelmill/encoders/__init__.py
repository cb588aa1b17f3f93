"""Encoders: plain ``nn.Module``s that turn one input's tensor into a vector (a CNN for
images, text encoders from scratch, a pretrained sentence encoder). Features hand them
out; models and the trainer use them. They know nothing of features, models or training."""
