package trainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/medvseg/medvseg/codec"
)

// ExtractOptions sets how Extract samples a video.
type ExtractOptions struct {
	// FPS resamples the video to this rate in frames per second; 0 keeps
	// the video's own timing.
	FPS float64
	// Size scales every frame to this size; zero keeps the video's size.
	Size codec.Size
	// Progress, if not nil, is called after every frame written, with the
	// stage "extract" and the container's frame count (0 when unknown).
	Progress func(stage string, done, total int)
}

// Extract decodes video and writes every frame to OUT/frames/0001.png,
// 0002.png, ... (1-based display numbers). Rotation stored in the container
// is applied. The frames folder replaces an earlier one only when every
// frame is written. It returns the stream's description as delivered and
// the number of frames written.
func Extract(ctx context.Context, video, out string, o ExtractOptions) (codec.Info, int, error) {
	if !(o.FPS >= 0) {
		return codec.Info{}, 0, fmt.Errorf("invalid frame rate %v for %q: must be positive, or 0 for the video's own", o.FPS, video)
	}

	reader, err := codec.Open(video, codec.ReaderOptions{FPS: o.FPS, Size: o.Size})
	if err != nil {
		return codec.Info{}, 0, err
	}
	defer reader.Close()

	info := reader.Info()
	log.Info().Str("stage", "extract").Str("video", video).Int("width", info.Width).Int("height", info.Height).
		Float64("fps", info.FrameRate).Int("rotation", info.Rotation).Msg("extract")

	dir := filepath.Join(out, "frames")
	frames, err := codec.NewSequenceWriter(dir)
	if err != nil {
		return info, 0, err
	}
	defer frames.Abort()

	start := time.Now()
	frame := &codec.Frame{}
	for {
		if err := ctx.Err(); err != nil {
			return info, 0, fmt.Errorf("extract %q: %w", video, err)
		}
		err := reader.Read(frame)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return info, 0, err
		}

		if err := frames.Write(frame); err != nil {
			return info, 0, err
		}
		if o.Progress != nil {
			o.Progress("extract", frames.Count(), info.FrameCount)
		}
	}

	count := frames.Count()
	if count == 0 {
		return info, 0, fmt.Errorf("extract %q: the video has no frames", video)
	}
	if err := frames.Commit(); err != nil {
		return info, 0, err
	}

	log.Info().Str("stage", "extract").Str("dir", dir).Int("frames", count).
		Float64("seconds", time.Since(start).Seconds()).Msg("extracted frames")
	return info, count, nil
}
