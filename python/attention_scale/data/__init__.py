"""Data: DeepLab-style list files, image and label reading, the VOC palette."""
