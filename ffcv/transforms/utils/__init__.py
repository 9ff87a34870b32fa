"""FFCV's `ffcv.transforms.utils` package: helpers FFCV users import into their own compiled operations
(`fast_crop`); kept at FFCV 1.0.2's import path for FFCV code compatibility."""
