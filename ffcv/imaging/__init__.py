"""Image kernels the fields and decoders are built on (no FFCV concept lives here).

* `jpeg`: JPEG encode / decode / size through simplejpeg (releases the GIL), DCT-domain scaling;
* `jpeg_window`, `jpeg_window_calls`, `libjpeg`: decoding only a window of a JPEG with the libjpeg-turbo
  bundled in Pillow's wheel (crop decoders);
* `area_resize`: exact area (box-filter) downscaling with OpenCV's INTER_AREA pixels;
* `jpeg_crops`: decode a crop window of a JPEG (or one decode for several windows) and resize it;
* `crop`: the random-resized-crop and center-crop window arithmetic (FFCV's, seeded per sample).
"""
