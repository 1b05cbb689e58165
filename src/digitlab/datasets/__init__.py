"""The images and labels digitlab learns from and is measured on, read from files or drawn: MNIST's files, people's
labelled folders, real handwriting by other writers, letters that are no digit, and digits redrawn as people hand
them in. Numpy arrays and image files, never PyTorch tensors: training, the benchmarks and the tests share them, and
none of it imports PyTorch (``tests/test_layout.py`` checks)."""
