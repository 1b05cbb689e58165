"""The help of the options that several jobs share: where MNIST is, and what your own labelled images may be."""

DATA_HELP = ("a folder of class folders 0-9 (and not_a_digit), of files whose names carry the label (3_x.png), or "
             "a path,label CSV; read as `predict` reads images")
DATA_DIR_HELP = "folder with the four MNIST files (default: $DIGITLAB_DATA, then ~/.cache/digitlab/mnist)"
