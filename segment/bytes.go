package segment

import "unsafe"

// float32Bytes reinterprets a float32 slice as its bytes, without copying.
func float32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*4)
}
