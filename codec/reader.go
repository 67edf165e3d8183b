package codec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"syscall"
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
	// ErrInvalidOption is an input format or demuxer option that FFmpeg
	// does not know or rejects. Reopening the input does not help.
	ErrInvalidOption = errors.New("invalid input option")
	// ErrInvalidGraph is a lavfi graph that FFmpeg cannot build. Reopening
	// the input does not help.
	ErrInvalidGraph = errors.New("invalid lavfi graph")
)

// ReaderOptions selects the input and what the Reader does to each frame.
// The zero value reads a file at its native rate and size.
type ReaderOptions struct {
	// Format forces an input format, as ffmpeg's -f does: "lavfi" or "v4l2"
	// for libavdevice inputs, "mjpeg" or "mpegts" for a stream FFmpeg cannot
	// probe. Empty lets FFmpeg probe the input, except that /dev/video paths
	// get "v4l2" and "lavfi:GRAPH" inputs get "lavfi".
	Format string
	// FormatOptions are demuxer, device or protocol options, such as
	// "video_size", "framerate" and "input_format" for a v4l2 device, or
	// "rtsp_transport" for rtsp. An option that no part of FFmpeg uses is
	// an error wrapping ErrInvalidOption. Network streams get low-latency
	// defaults for options not given here: fflags=nobuffer and at most 1 s
	// (analyzeduration, in microseconds) or 1 MB (probesize) of stream
	// analysis.
	FormatOptions map[string]string
	// Timeout is the longest one open or read of the input may block
	// before it fails with ErrTimedOut. Zero means DefaultLiveTimeout for
	// capture devices and network streams and no limit for files and lavfi
	// graphs. Negative means no limit.
	Timeout time.Duration
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
	options  ReaderOptions
	info     Info
	kind     InputKind
	watchdog *watchdog

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

// Open opens a video file, URL, capture device or lavfi graph and prepares
// its best video stream for decoding. It is OpenContext with a context
// that never ends.
func Open(url string, options ReaderOptions) (*Reader, error) {
	return OpenContext(context.Background(), url, options)
}

// OpenContext is Open with a context: once ctx ends, the open and every
// later Read that waits for input data fail with the context's error. A
// live input's I/O that blocks longer than the options' Timeout fails with
// ErrTimedOut.
func OpenContext(ctx context.Context, url string, options ReaderOptions) (*Reader, error) {
	kind := ClassifyInput(url, options.Format)
	url, options.Format = resolveInput(url, options.Format)
	format, err := findInputFormat(url, options.Format)
	if err != nil {
		return nil, err
	}
	if err := checkPath(url, kind, options.Format); err != nil {
		return nil, err
	}

	r := &Reader{options: options, kind: kind, firstPTS: astiav.NoPtsValue}
	if err := r.open(ctx, url, format); err != nil {
		r.Close()
		return nil, err
	}

	return r, nil
}

// checkPath returns ErrNotFound, with the fix, for a file or device path
// that does not exist.
func checkPath(path string, kind InputKind, format string) error {
	switch {
	case kind == InputFile && format == "":
	case kind == InputDevice && strings.HasPrefix(path, "/dev/"):
	default:
		return nil
	}

	// FFmpeg's file protocol takes "file:PATH" and "file://PATH" alike.
	local := strings.TrimPrefix(strings.TrimPrefix(path, "file:"), "//")
	_, err := os.Stat(local)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist) && kind == InputDevice:
		return fmt.Errorf("open device %q: %w: no such capture device; list the devices with "+
			"`v4l2-ctl --list-devices` or `ls /dev/video*`, and check that the camera is connected",
			path, ErrNotFound)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("open video %q: %w; check the path", path, ErrNotFound)
	default:
		return fmt.Errorf("open video %q: %w", path, err)
	}
}

// liveTimeout returns the I/O timeout for the input, zero for none.
func (r *Reader) liveTimeout() time.Duration {
	switch {
	case r.options.Timeout < 0:
		return 0
	case r.options.Timeout > 0:
		return r.options.Timeout
	case r.kind == InputDevice || r.kind == InputNetwork:
		return DefaultLiveTimeout
	default:
		return 0
	}
}

// findInputFormat returns the named input format, nil when name is empty.
func findInputFormat(url, name string) (*astiav.InputFormat, error) {
	if name == "" {
		return nil, nil
	}

	astiav.RegisterAllDevices()
	format := astiav.FindInputFormat(name)
	if format == nil {
		return nil, fmt.Errorf("open video %q: %w: input format %q is not in this FFmpeg build; "+
			"list the formats with `ffmpeg -formats`", url, ErrInvalidOption, name)
	}
	return format, nil
}

func (r *Reader) open(ctx context.Context, url string, format *astiav.InputFormat) error {
	dict, err := r.demuxerOptions(url)
	if err != nil {
		return err
	}
	defer dict.Free()

	r.input = astiav.AllocFormatContext()
	r.watchdog = newWatchdog(ctx, r.input, r.liveTimeout())
	r.watchdog.begin()
	err = r.input.OpenInput(url, format, dict)
	interrupted := r.watchdog.end()
	if err != nil {
		r.input.Free()
		r.input = nil
	}
	if interrupted != nil {
		// Some demuxers, such as mpegts, return success from a header read
		// that was interrupted.
		return r.interruptError("open", url, interrupted)
	}
	if err != nil {
		return openError(url, err, r.kind, looksLikeMP4(url))
	}

	if err := unusedOptions(url, dict); err != nil {
		return err
	}

	r.watchdog.begin()
	err = r.input.FindStreamInfo(nil)
	if interrupted := r.watchdog.end(); interrupted != nil {
		return r.interruptError("open", url, interrupted)
	}
	if err != nil {
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

// demuxerOptions returns the options' FormatOptions, with the low-latency
// defaults added for network streams, as an FFmpeg dictionary.
func (r *Reader) demuxerOptions(url string) (*astiav.Dictionary, error) {
	options := make(map[string]string, len(r.options.FormatOptions)+len(liveNetworkOptions))
	if r.kind == InputNetwork {
		for key, value := range liveNetworkOptions {
			options[key] = value
		}
	}
	for key, value := range r.options.FormatOptions {
		options[key] = value
	}

	dict := astiav.NewDictionary()
	for key, value := range options {
		if err := dict.Set(key, value, 0); err != nil {
			dict.Free()
			return nil, fmt.Errorf("open video %q: set option %s=%s: %w: %w", url, key, value, ErrInvalidOption, err)
		}
	}
	return dict, nil
}

// unusedOptions returns an ErrInvalidOption error naming the options that
// avformat_open_input left in dict because neither the demuxer nor the
// protocol uses them.
func unusedOptions(url string, dict *astiav.Dictionary) error {
	flags := astiav.NewDictionaryFlags(astiav.DictionaryFlagIgnoreSuffix)
	var unused []string
	for entry := dict.Get("", nil, flags); entry != nil; entry = dict.Get("", entry, flags) {
		unused = append(unused, entry.Key()+"="+entry.Value())
	}
	if len(unused) == 0 {
		return nil
	}

	return fmt.Errorf("open video %q: %w: %s not used by the input; check the option names "+
		"with `ffmpeg -h demuxer=FORMAT` or `ffmpeg -h protocol=PROTOCOL`",
		url, ErrInvalidOption, strings.Join(unused, ", "))
}

// interruptError explains an open or read that the watchdog interrupted.
func (r *Reader) interruptError(action, url string, cause error) error {
	if !errors.Is(cause, ErrTimedOut) {
		return fmt.Errorf("%s video %q: %w", action, url, cause)
	}
	// The watchdog sees only that no frame came, not whether bytes did, so
	// the message covers a silent sender and data in another format.
	return fmt.Errorf("%s video %q: %w: no video for %v; check that the source is running, "+
		"sends to this address, and sends the input format given", action, url, ErrTimedOut,
		r.liveTimeout())
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

func openError(url string, err error, kind InputKind, mp4 bool) error {
	message := err.Error()
	var errno syscall.Errno
	var averr astiav.Error
	if errors.As(err, &averr) && averr < 0 {
		errno = syscall.Errno(-averr)
	}

	switch {
	case kind == InputDevice && (errno == syscall.EACCES || errno == syscall.EPERM):
		return fmt.Errorf("open device %q: %w; give this user access to the device, for example "+
			"by adding it to the video group", url, err)
	case kind == InputDevice && (errno == syscall.EBUSY):
		return fmt.Errorf("open device %q: %w; another program is using the device, close it", url, err)
	case kind == InputDevice:
		return fmt.Errorf("open device %q: %w; check the device with `ffmpeg -f v4l2 -list_formats all -i %s`",
			url, err, url)
	case kind == InputNetwork && errno == syscall.ECONNREFUSED:
		return fmt.Errorf("open stream %q: %w; check that the server is running and the address "+
			"and port are right", url, err)
	case kind == InputNetwork:
		return fmt.Errorf("open stream %q: %w; check the URL, and that the sender is running", url, err)
	case kind == InputLavfi:
		return fmt.Errorf("open lavfi graph %q: %w (%w); check the graph with `ffmpeg -f lavfi -i '%s'`",
			url, ErrInvalidGraph, err, url)
	}

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
	if r.kind.Live() {
		// Frame threading holds back one frame per thread, so live inputs
		// decode with slice threads only and ask for low delay.
		r.decoder.SetThreadType(astiav.ThreadTypeSlice)
		r.decoder.SetFlags(r.decoder.Flags().Add(astiav.CodecContextFlagLowDelay))
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
		r.watchdog.begin()
		err := r.input.ReadFrame(r.packet)
		if interrupted := r.watchdog.end(); interrupted != nil {
			if err == nil {
				r.packet.Unref()
			}
			return r.interruptError("read", r.info.URL, interrupted)
		}
		if err != nil && r.kind.Live() && !errors.Is(err, astiav.ErrEof) {
			return fmt.Errorf("read video %q: %w", r.info.URL, err)
		}
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

	if r.watchdog != nil {
		r.watchdog.close()
		r.watchdog = nil
	}

	return nil
}
