package codec

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asticode/go-astiav"
)

// AccessUnit is one compressed picture as a real-time encoder emits it: a
// VP8 frame, or the Annex B NAL units of one H.264 picture with SPS and PPS
// before every keyframe.
type AccessUnit struct {
	Data []byte
	// PTS is the presentation time of the frame this access unit encodes.
	PTS      time.Duration
	Keyframe bool
}

// Names of the codecs that RealtimeEncoderOptions accepts.
const (
	CodecVP8  = "vp8"
	CodecH264 = "h264"
)

// RealtimeEncoderOptions returns encoder settings for live streaming, where
// every frame must leave the encoder as soon as it enters:
//
//   - vp8: libvpx with the realtime deadline, cpu-used 8, no lag-in-frames
//     and error resilience on, constrained to bitRate bits per second;
//   - h264: libx264 with tune zerolatency, the baseline profile (which x264
//     writes as constrained baseline) and no B-frames.
//
// Both place a keyframe at least every 4 seconds, so a viewer that missed a
// keyframe request still recovers.
func RealtimeEncoderOptions(codecName string, width, height int, frameRate float64, bitRate int) (EncoderOptions, error) {
	if bitRate <= 0 {
		return EncoderOptions{}, fmt.Errorf("invalid bit rate %d: must be positive", bitRate)
	}

	o := EncoderOptions{
		Width: width, Height: height, FrameRate: frameRate,
		GOP:     max(1, int(4*frameRate)),
		Threads: 2,
	}

	switch codecName {
	case CodecVP8:
		o.Codec = "libvpx"
		// With a bit rate set, libvpx's crf selects constrained quality:
		// quality level 10 capped by the bit rate.
		o.CRF = 10
		o.Options = map[string]string{
			"deadline":        "realtime",
			"cpu-used":        "8",
			"lag-in-frames":   "0",
			"error-resilient": "default",
			"b":               fmt.Sprint(bitRate),
		}
	case CodecH264:
		o.Codec = "libx264"
		o.Preset = "veryfast"
		o.Options = map[string]string{
			"tune":       "zerolatency",
			"profile":    "baseline",
			"bf":         "0",
			"forced-idr": "1",
			"maxrate":    fmt.Sprint(bitRate),
			"bufsize":    fmt.Sprint(bitRate / 2),
		}
	default:
		return EncoderOptions{}, fmt.Errorf("invalid codec %q: expected %s or %s", codecName, CodecVP8, CodecH264)
	}
	return o, nil
}

// ptsHistory is how many input PTS an Encoder remembers to label its access
// units. Real-time settings emit each access unit before the next frame
// enters, so any encoder delay below this count is covered.
const ptsHistory = 64

// Encoder turns BGR frames into access units for a live stream. Encode and
// Close must be called from one goroutine; ForceKeyframe may be called from
// any goroutine.
type Encoder struct {
	encoder  *encoder
	timeBase astiav.Rational
	force    atomic.Bool
	pts      [ptsHistory]time.Duration
}

// NewEncoder opens an encoder. Codec headers travel in band, before every
// keyframe, since a stream has no container to carry them.
func NewEncoder(options EncoderOptions) (*Encoder, error) {
	options.GlobalHeader = false
	e, err := newEncoder(options)
	if err != nil {
		return nil, err
	}
	return &Encoder{encoder: e, timeBase: e.context.TimeBase()}, nil
}

// ForceKeyframe makes the next frame that Encode receives a keyframe, for a
// viewer that joins or reports a lost picture.
func (e *Encoder) ForceKeyframe() {
	e.force.Store(true)
}

// Encode compresses f and calls emit for every access unit that is ready.
// AccessUnit.Data is a fresh slice that emit may keep.
func (e *Encoder) Encode(f *Frame, emit func(AccessUnit) error) error {
	if e.encoder == nil {
		return fmt.Errorf("encode %v: encoder is closed", f)
	}

	e.pts[e.encoder.next%ptsHistory] = f.PTS
	if e.force.Swap(false) {
		e.encoder.keyframe = true
	}

	return e.encoder.encode(f, func(p *astiav.Packet) error {
		return emit(AccessUnit{
			Data:     p.Data(),
			PTS:      e.pts[p.Pts()%ptsHistory],
			Keyframe: p.Flags().Has(astiav.PacketFlagKey),
		})
	})
}

// Close releases the encoder without draining it: a live stream has no use
// for frames that were not sent in time. Calling it again does nothing.
func (e *Encoder) Close() error {
	if e.encoder != nil {
		e.encoder.close()
		e.encoder = nil
	}
	return nil
}
