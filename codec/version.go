package codec

// #cgo pkg-config: libavcodec libavformat libavutil
// #include <libavcodec/avcodec.h>
// #include <libavformat/avformat.h>
// #include <libavutil/avutil.h>
import "C"

import (
	"fmt"
	"strings"

	"github.com/asticode/go-astiav"
	"github.com/rs/zerolog"
)

// FFmpegVersion returns the FFmpeg release and the libavcodec and
// libavformat versions of the libraries loaded at run time.
func FFmpegVersion() string {
	return fmt.Sprintf("%s (libavcodec %s, libavformat %s)", C.GoString(C.av_version_info()),
		libraryVersion(uint32(C.avcodec_version())), libraryVersion(uint32(C.avformat_version())))
}

func libraryVersion(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", v>>16, (v>>8)&0xff, v&0xff)
}

// HasEncoder reports whether the loaded FFmpeg has the named encoder.
func HasEncoder(name string) bool {
	return astiav.FindEncoderByName(name) != nil
}

// RouteFFmpegLogs sends FFmpeg's own log lines to logger: errors at warn
// level, warnings at debug level, everything quieter is dropped.
func RouteFFmpegLogs(logger zerolog.Logger) {
	astiav.SetLogLevel(astiav.LogLevelWarning)
	astiav.SetLogCallback(func(c astiav.Classer, level astiav.LogLevel, format, message string) {
		message = strings.TrimSpace(message)
		if message == "" {
			return
		}

		event := logger.Debug()
		if level <= astiav.LogLevelError {
			event = logger.Warn()
		}
		if c != nil {
			if class := c.Class(); class != nil {
				event = event.Str("ffmpeg_class", class.Name())
			}
		}
		event.Str("component", "ffmpeg").Msg(message)
	})
}

// FFmpeg prints its own informational lines, such as x264's statistics, to
// stderr by default; only errors get through until RouteFFmpegLogs is called.
func init() {
	astiav.SetLogLevel(astiav.LogLevelError)
}
