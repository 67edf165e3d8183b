package segment

import "gocv.io/x/gocv"

// OpenCVVersion returns the version of the OpenCV library linked through gocv.
func OpenCVVersion() string {
	return gocv.OpenCVVersion()
}
