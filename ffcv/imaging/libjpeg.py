"""libjpeg's ABI as the window decoder uses it, and the parameter block shared with its compiled bodies.

Offsets are those of libjpeg 6.2 (LP64) in `jpeg_decompress_struct` and `jpeg_error_mgr`, as the
libjpeg-turbo bundled with Pillow lays them out (`jpeg_window` checks the struct size at first use).
"""

# libjpeg 6.2 ABI (LP64): offsets in jpeg_decompress_struct and jpeg_error_mgr
CLIENT_DATA = 24
IMAGE_WIDTH, IMAGE_HEIGHT, NUM_COMPONENTS = 48, 52, 56
OUT_COLOR_SPACE, SCALE_NUM, SCALE_DENOM = 64, 68, 72
DCT_METHOD, FANCY_UPSAMPLING = 96, 100
OUTPUT_WIDTH, OUTPUT_HEIGHT, OUTPUT_COMPONENTS = 136, 140, 148
ERROR_EXIT, EMIT_MESSAGE, FORMAT_MESSAGE, MSG_PARM = 0, 8, 24, 44
JCS_RGB, JDCT_IFAST, JPEG_LIB_VERSION = 2, 1, 62
MAX_ROWS_PER_READ = 16
CALLED = ('jpeg_CreateDecompress', 'jpeg_mem_src', 'jpeg_read_header', 'jpeg_start_decompress', 'jpeg_crop_scanline',
          'jpeg_skip_scanlines', 'jpeg_read_scanlines', 'jpeg_finish_decompress', 'jpeg_abort_decompress')

# params (int64) shared by Python (jpeg_window) and the compiled bodies (jpeg_window_calls); P_SELF holds the
# block's own address (the bodies pass libjpeg addresses of entries)
(P_CINFO, P_DATA, P_SIZE, P_SCALE, P_TOP, P_LEFT, P_HEIGHT, P_WIDTH, P_OUT, P_CAPACITY, P_EXPECT_H, P_EXPECT_W,
 P_STATUS, P_X, P_CROP_W, P_XOFFSET, P_XWIDTH, P_ROWS, P_STRUCT_SIZE, P_FOUND_H, P_FOUND_W, P_SELF,
 P_ROW_POINTERS) = range(23)
PARAMS = P_ROW_POINTERS + MAX_ROWS_PER_READ
# P_STATUS values set by the body
OK, SIZE_MISMATCH, OUT_OF_BOUNDS, TOO_SMALL, STALLED, NOT_RGB = 0, 1, 2, 3, 4, 5
