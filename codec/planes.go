package codec

// #cgo pkg-config: libavutil
// #include <stdint.h>
// #include <string.h>
// #include <libavutil/frame.h>
//
// // Copies packed rows into plane 0 of a frame whose rows may be padded.
// static int medvseg_copy_packed(AVFrame *frame, const uint8_t *src, int row_bytes, int rows) {
//     int err = av_frame_make_writable(frame);
//     if (err < 0) {
//         return err;
//     }
//     for (int y = 0; y < rows; y++) {
//         memcpy(frame->data[0] + (size_t)y * frame->linesize[0], src + (size_t)y * row_bytes, row_bytes);
//     }
//     return 0;
// }
//
// static int medvseg_make_writable(AVFrame *frame) {
//     return av_frame_make_writable(frame);
// }
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/asticode/go-astiav"
)

// copyPackedIntoFrame copies a packed BGR24 image into an allocated AVFrame of
// the same size; go-astiav v0.16.0 has no writer into a frame's planes.
func copyPackedIntoFrame(dst *astiav.Frame, src *Frame) error {
	rowBytes := src.Width * 3
	if len(src.Pix) < rowBytes*src.Height {
		return fmt.Errorf("frame %d: %d bytes for %dx%d BGR, expected %d",
			src.Index, len(src.Pix), src.Width, src.Height, rowBytes*src.Height)
	}

	ret := C.medvseg_copy_packed((*C.AVFrame)(dst.UnsafePointer()),
		(*C.uint8_t)(unsafe.Pointer(&src.Pix[0])), C.int(rowBytes), C.int(src.Height))
	if ret < 0 {
		return fmt.Errorf("make frame writable: %w", astiav.Error(ret))
	}

	return nil
}

// makeWritable gives dst its own buffers when an encoder still holds a reference to them.
func makeWritable(dst *astiav.Frame) error {
	if ret := C.medvseg_make_writable((*C.AVFrame)(dst.UnsafePointer())); ret < 0 {
		return fmt.Errorf("make frame writable: %w", astiav.Error(ret))
	}
	return nil
}
