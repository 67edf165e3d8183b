package codec

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/asticode/go-astiav"
)

// Errors a Reader returns, wrapped with the path and the fix; test with errors.Is.
var (
	ErrNotFound         = errors.New("file not found")
	ErrNotVideo         = errors.New("not a video FFmpeg can read")
	ErrNoVideoStream    = errors.New("no video stream")
	ErrUnsupportedCodec = errors.New("unsupported codec")
	ErrTruncated        = errors.New("truncated video")
)

// ReaderOptions selects the input and what the Reader does to each frame.
// The zero value reads a file at its native rate and size.
type ReaderOptions struct {
	// Format forces an input format, such as "lavfi" or "v4l2" for
	// libavdevice inputs. Empty lets FFmpeg probe the input.
	Format string
	// FormatOptions are demuxer or device options, such as "video_size" or
	// "framerate" for a capture device.
	FormatOptions map[string]string
	// Size scales every frame to this size after rotation; zero keeps the
	// displayed size of the source.
	Size Size
	// FPS resamples the video to this rate in frames per second by dropping
	// or repeating frames; zero keeps the native timing.
	FPS float64
	// Threads is the decoder thread count; zero lets FFmpeg choose.
	Threads int
	// KeepAudio queues the packets of the input's audio stream, if any, for
	// a Writer to copy: see Reader.Audio.
	KeepAudio bool
}

// Info describes a video source as the Reader delivers it.
type Info struct {
	URL   string
	Codec string
	// Width and Height are the size of delivered frames, after rotation and scaling.
	Width  int
	Height int
	// FrameRate is the delivered rate in frames per second: the resampled
	// rate when ReaderOptions.FPS is set, else the stream's average rate.
	FrameRate float64
	// Rotation is the clockwise rotation in degrees stored in the container
	// and applied to every frame: 0, 90, 180 or 270.
	Rotation int
	// Duration is the container's duration, zero when unknown (live sources).
	Duration time.Duration
	// FrameCount is the frame count stored in the container, zero when unknown.
	FrameCount int
}

// Reader decodes one video stream into BGR frames. A Reader is not safe for
// concurrent use.
type Reader struct {
	options ReaderOptions
	info    Info

	input   *astiav.FormatContext
	stream  *astiav.Stream
	decoder *astiav.CodecContext
	packet  *astiav.Packet
	decoded *astiav.Frame
	output  *astiav.Frame
	filter  *filterChain
	audio   *AudioTrack
	audioID int

	firstPTS      int64
	delivered     int
	packets       int // video packets sent to the decoder
	demuxerDone   bool
	decoderDone   bool
	lastReadError error
}

// Open opens a video file, URL or device and prepares its best video stream
// for decoding.
func Open(url string, options ReaderOptions) (*Reader, error) {
	if options.Format == "" && !strings.Contains(url, "://") {
		if _, err := os.Stat(url); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("open video %q: %w; check the path", url, ErrNotFound)
			}
			return nil, fmt.Errorf("open video %q: %w", url, err)
		}
	}

	r := &Reader{options: options, firstPTS: astiav.NoPtsValue}
	if err := r.open(url); err != nil {
		r.Close()
		return nil, err
	}

	return r, nil
}

func (r *Reader) open(url string) error {
	var format *astiav.InputFormat
	if r.options.Format != "" {
		astiav.RegisterAllDevices()

		format = astiav.FindInputFormat(r.options.Format)
		if format == nil {
			return fmt.Errorf("open video %q: input format %q is not in this FFmpeg build; "+
				"list the formats with `ffmpeg -formats`", url, r.options.Format)
		}
	}

	dict := astiav.NewDictionary()
	defer dict.Free()
	for key, value := range r.options.FormatOptions {
		if err := dict.Set(key, value, 0); err != nil {
			return fmt.Errorf("open video %q: set option %s=%s: %w", url, key, value, err)
		}
	}

	r.input = astiav.AllocFormatContext()
	if err := r.input.OpenInput(url, format, dict); err != nil {
		r.input.Free()
		r.input = nil
		return openError(url, err, looksLikeMP4(url))
	}

	if err := r.input.FindStreamInfo(nil); err != nil {
		return fmt.Errorf("open video %q: read stream info: %w: %w", url, ErrNotVideo, err)
	}

	r.stream = bestVideoStream(r.input)
	if r.stream == nil {
		return fmt.Errorf("open video %q: %w: the file has audio or data only", url, ErrNoVideoStream)
	}

	if err := r.openDecoder(url); err != nil {
		return err
	}

	if r.options.KeepAudio {
		if s := firstAudioStream(r.input); s != nil {
			r.audio = newAudioTrack(s)
			r.audioID = s.Index()
		}
	}

	r.packet = astiav.AllocPacket()
	r.decoded = astiav.AllocFrame()
	r.output = astiav.AllocFrame()
	r.info = r.describe(url)

	return nil
}

// looksLikeMP4 reports whether a file starts with an ISO media ftyp box,
// so a damaged MP4 can be distinguished from a file that is not video at all.
func looksLikeMP4(path string) bool {
	file, err := os.Open(path)
	if err != nil {
		return false
	}
	defer file.Close()

	header := make([]byte, 8)
	if _, err := io.ReadFull(file, header); err != nil {
		return false
	}
	return string(header[4:8]) == "ftyp"
}

func openError(url string, err error, mp4 bool) error {
	message := err.Error()
	switch {
	case errors.Is(err, astiav.ErrInvaliddata) && mp4:
		return fmt.Errorf("open video %q: %w (%v): the file is damaged or truncated, "+
			"for example a recording that was not finished; re-export it", url, ErrTruncated, err)
	case errors.Is(err, astiav.ErrInvaliddata):
		return fmt.Errorf("open video %q: %w (%s); convert it with ffmpeg to mp4 (H.264)",
			url, ErrNotVideo, message)
	default:
		return fmt.Errorf("open video %q: %w", url, err)
	}
}

func bestVideoStream(input *astiav.FormatContext) *astiav.Stream {
	var best *astiav.Stream
	for _, s := range input.Streams() {
		params := s.CodecParameters()
		if params.MediaType() != astiav.MediaTypeVideo {
			continue
		}

		if best == nil || params.Width()*params.Height() > best.CodecParameters().Width()*best.CodecParameters().Height() {
			best = s
		}
	}

	return best
}

func firstAudioStream(input *astiav.FormatContext) *astiav.Stream {
	for _, s := range input.Streams() {
		if s.CodecParameters().MediaType() == astiav.MediaTypeAudio {
			return s
		}
	}
	return nil
}

// Audio returns the input's audio track when ReaderOptions.KeepAudio was
// set and the input has one, else nil. Its packets queue up as Read reads
// the file, and a Writer created with it copies them into its output.
func (r *Reader) Audio() *AudioTrack { return r.audio }

func (r *Reader) openDecoder(url string) error {
	params := r.stream.CodecParameters()
	decoder := astiav.FindDecoder(params.CodecID())
	if decoder == nil {
		return fmt.Errorf("open video %q: %w %q: this FFmpeg build has no decoder for it; "+
			"convert the file with `ffmpeg -i %s -c:v libx264 out.mp4`",
			url, ErrUnsupportedCodec, params.CodecID().String(), url)
	}

	r.decoder = astiav.AllocCodecContext(decoder)
	if err := params.ToCodecContext(r.decoder); err != nil {
		return fmt.Errorf("open video %q: copy codec parameters: %w", url, err)
	}

	if r.options.Threads > 0 {
		r.decoder.SetThreadCount(r.options.Threads)
	}
	r.decoder.SetTimeBase(r.stream.TimeBase())

	if err := r.decoder.Open(decoder, nil); err != nil {
		return fmt.Errorf("open video %q: open %s decoder: %w", url, decoder.Name(), err)
	}

	return nil
}

func (r *Reader) describe(url string) Info {
	params := r.stream.CodecParameters()
	info := Info{
		URL:        url,
		Codec:      params.CodecID().String(),
		Rotation:   streamRotation(r.stream),
		FrameCount: int(r.stream.NbFrames()),
		FrameRate:  streamFrameRate(r.input, r.stream),
	}

	if d := r.input.Duration(); d > 0 {
		info.Duration = time.Duration(d) * time.Microsecond
	}

	info.Width, info.Height = params.Width(), params.Height()
	if info.Rotation == 90 || info.Rotation == 270 {
		info.Width, info.Height = info.Height, info.Width
	}

	if !r.options.Size.IsZero() {
		info.Width, info.Height = r.options.Size.Width, r.options.Size.Height
	}

	if r.options.FPS > 0 {
		info.FrameRate = r.options.FPS
		if info.Duration > 0 {
			info.FrameCount = int(math.Round(info.Duration.Seconds() * r.options.FPS))
		}
	}

	return info
}

// streamRotation returns the clockwise display rotation of a stream, rounded
// to a multiple of 90 degrees.
func streamRotation(s *astiav.Stream) int {
	data := s.SideData(astiav.PacketSideDataTypeDisplaymatrix)
	if len(data) == 0 {
		return 0
	}

	matrix, err := astiav.NewDisplayMatrixFromBytes(data)
	if err != nil {
		return 0
	}

	degrees := int(math.Round(matrix.Rotation()/90)) * 90
	return ((degrees % 360) + 360) % 360
}

func streamFrameRate(input *astiav.FormatContext, s *astiav.Stream) float64 {
	for _, rate := range []astiav.Rational{s.AvgFrameRate(), s.RFrameRate(), input.GuessFrameRate(s, nil)} {
		if rate.Num() > 0 && rate.Den() > 0 {
			return rate.Float64()
		}
	}

	return 0
}

// Info describes the frames the Reader delivers.
func (r *Reader) Info() Info { return r.info }

// Read decodes the next frame into f, resizing f only when its buffer is too
// small. It returns io.EOF after the last frame, and ErrTruncated when the
// stream ends before the frame count stored in the container.
func (r *Reader) Read(f *Frame) error {
	for {
		got, err := r.receiveFiltered(f)
		if got || err != nil {
			return err
		}

		if err := r.feedFilter(); err != nil {
			return err
		}
	}
}

// receiveFiltered copies the next frame waiting in the filter chain into f.
func (r *Reader) receiveFiltered(f *Frame) (bool, error) {
	if r.filter == nil {
		return false, nil
	}

	err := r.filter.receive(r.output)
	switch {
	case errors.Is(err, astiav.ErrEagain):
		return false, nil
	case errors.Is(err, astiav.ErrEof):
		return false, r.endOfStream()
	case err != nil:
		return false, fmt.Errorf("read video %q: filter frame: %w", r.info.URL, err)
	}
	defer r.output.Unref()

	f.Resize(r.output.Width(), r.output.Height())
	if _, err := r.output.ImageCopyToBuffer(f.Pix, 1); err != nil {
		return false, fmt.Errorf("read video %q: copy frame %d: %w", r.info.URL, r.delivered, err)
	}

	f.Index = r.delivered
	f.PTS = r.presentationTime(r.output.Pts())
	r.delivered++

	return true, nil
}

func (r *Reader) presentationTime(pts int64) time.Duration {
	if pts == astiav.NoPtsValue {
		if r.info.FrameRate <= 0 {
			return 0
		}
		return time.Duration(float64(r.delivered) / r.info.FrameRate * float64(time.Second))
	}

	base := r.filter.timeBase
	if r.firstPTS == astiav.NoPtsValue {
		r.firstPTS = pts
		if r.audio != nil {
			r.audio.setStart(float64(pts) * float64(base.Num()) / float64(base.Den()))
		}
	}

	seconds := float64(pts-r.firstPTS) * float64(base.Num()) / float64(base.Den())
	return time.Duration(math.Round(seconds * float64(time.Second)))
}

func (r *Reader) endOfStream() error {
	if r.lastReadError != nil {
		return fmt.Errorf("read video %q: %w after %d frames (%v); the file is damaged or "+
			"was not finished writing", r.info.URL, ErrTruncated, r.delivered, r.lastReadError)
	}

	expected := int(r.stream.NbFrames())
	if expected > 0 && r.packets < expected {
		return fmt.Errorf("read video %q: %w: the container lists %d frames but the file contains %d; "+
			"it was not finished writing or was cut short", r.info.URL, ErrTruncated, expected, r.packets)
	}

	return io.EOF
}

// Corrupt returns, once Read has returned io.EOF, the number of video
// packets the decoder could not turn into frames: damaged data that was
// skipped, as the ffmpeg CLI does. It is 0 when a frame rate is forced.
func (r *Reader) Corrupt() int {
	if r.options.FPS > 0 {
		return 0
	}
	return max(r.packets-r.delivered, 0)
}

// feedFilter moves one decoded frame, or the end of the stream, into the filter chain.
func (r *Reader) feedFilter() error {
	for {
		if r.decoderDone {
			return r.filter.flush()
		}

		err := r.decoder.ReceiveFrame(r.decoded)
		switch {
		case err == nil:
			defer r.decoded.Unref()
			return r.filterDecoded()
		case errors.Is(err, astiav.ErrEof):
			r.decoderDone = true
			if r.filter == nil {
				return r.endOfStream()
			}
			continue
		case !errors.Is(err, astiav.ErrEagain):
			return fmt.Errorf("read video %q: decode frame %d: %w", r.info.URL, r.delivered, err)
		}

		if err := r.sendPacket(); err != nil {
			return err
		}
	}
}

func (r *Reader) filterDecoded() error {
	if r.filter == nil || !r.filter.accepts(r.decoded) {
		chain, err := newFilterChain(r.decoded, r.stream.TimeBase(), r.info, r.options)
		if err != nil {
			return fmt.Errorf("read video %q: %w", r.info.URL, err)
		}

		if r.filter != nil {
			r.filter.close()
		}
		r.filter = chain
	}

	return r.filter.send(r.decoded)
}

// sendPacket reads packets until one of the video stream reaches the decoder,
// or signals the end of input to the decoder.
func (r *Reader) sendPacket() error {
	if r.demuxerDone {
		return nil
	}

	for {
		err := r.input.ReadFrame(r.packet)
		if err != nil {
			if !errors.Is(err, astiav.ErrEof) {
				r.lastReadError = err
			}

			r.demuxerDone = true
			return r.decoder.SendPacket(nil)
		}

		if r.audio != nil && r.packet.StreamIndex() == r.audioID {
			err := r.audio.push(r.packet)
			r.packet.Unref()
			if err != nil {
				return fmt.Errorf("read video %q: queue audio packet: %w", r.info.URL, err)
			}
			continue
		}
		if r.packet.StreamIndex() != r.stream.Index() {
			r.packet.Unref()
			continue
		}

		r.packets++
		err = r.decoder.SendPacket(r.packet)
		r.packet.Unref()
		if err != nil && !errors.Is(err, astiav.ErrInvaliddata) {
			return fmt.Errorf("read video %q: send packet: %w", r.info.URL, err)
		}

		// A packet the decoder rejects as invalid is skipped, as the ffmpeg
		// CLI does, and counted by Corrupt.
		return nil
	}
}

// Close frees every native resource of the Reader. It is safe to call twice.
func (r *Reader) Close() error {
	if r.filter != nil {
		r.filter.close()
		r.filter = nil
	}

	for _, frame := range []**astiav.Frame{&r.decoded, &r.output} {
		if *frame != nil {
			(*frame).Free()
			*frame = nil
		}
	}

	if r.packet != nil {
		r.packet.Free()
		r.packet = nil
	}

	if r.decoder != nil {
		r.decoder.Free()
		r.decoder = nil
	}

	if r.audio != nil {
		r.audio.Close()
		r.audio = nil
	}

	if r.input != nil {
		r.input.CloseInput()
		r.input.Free()
		r.input = nil
	}

	return nil
}
