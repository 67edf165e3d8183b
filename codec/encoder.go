package codec

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/asticode/go-astiav"
)

// EncoderOptions configures video encoding from BGR frames.
type EncoderOptions struct {
	// Codec is an FFmpeg encoder name; empty means "libx264".
	Codec  string
	Width  int
	Height int
	// FrameRate in frames per second; it sets the time base (1/rate) and the
	// duration of every packet.
	FrameRate float64
	// Preset is the x264 speed preset, such as "veryfast" (the default).
	Preset string
	// CRF is the x264 constant rate factor, 0-51, lower is better quality;
	// zero means 23.
	CRF int
	// GOP is the maximum distance between keyframes in frames; zero lets the encoder choose.
	GOP int
	// Options are extra private options of the encoder, such as "tune".
	Options map[string]string
	// GlobalHeader puts codec headers in the container instead of in every
	// keyframe, as mp4 wants.
	GlobalHeader bool
	// Threads is the encoder thread count; zero lets FFmpeg choose.
	Threads int
}

func (o *EncoderOptions) withDefaults() EncoderOptions {
	out := *o
	if out.Codec == "" {
		out.Codec = "libx264"
	}
	if out.Preset == "" && out.Codec == "libx264" {
		out.Preset = "veryfast"
	}
	if out.CRF == 0 {
		out.CRF = 23
	}
	return out
}

// encoder turns BGR frames into compressed packets with a constant frame rate.
type encoder struct {
	options EncoderOptions
	context *astiav.CodecContext
	scaler  *astiav.SoftwareScaleContext
	bgr     *astiav.Frame
	yuv     *astiav.Frame
	packet  *astiav.Packet
	next    int64
	// keyframe makes the next encoded frame a keyframe.
	keyframe bool
}

func newEncoder(options EncoderOptions) (*encoder, error) {
	options = options.withDefaults()
	if options.Width <= 0 || options.Height <= 0 || options.Width%2 != 0 || options.Height%2 != 0 {
		return nil, fmt.Errorf("invalid encoder size %dx%d: width and height must be positive and even "+
			"for 4:2:0 video; resize the frames", options.Width, options.Height)
	}
	if options.FrameRate <= 0 || math.IsNaN(options.FrameRate) {
		return nil, fmt.Errorf("invalid frame rate %v: must be positive", options.FrameRate)
	}

	codec := astiav.FindEncoderByName(options.Codec)
	if codec == nil {
		return nil, fmt.Errorf("encoder %q is not in this FFmpeg build; install Debian's ffmpeg "+
			"libraries (make setup) or choose another codec", options.Codec)
	}

	e := &encoder{options: options, context: astiav.AllocCodecContext(codec)}
	if err := e.open(codec); err != nil {
		e.close()
		return nil, err
	}

	return e, nil
}

func (e *encoder) open(codec *astiav.Codec) error {
	o := e.options
	rate := rationalFromRate(o.FrameRate)

	e.context.SetWidth(o.Width)
	e.context.SetHeight(o.Height)
	e.context.SetPixelFormat(astiav.PixelFormatYuv420P)
	e.context.SetTimeBase(astiav.NewRational(rate.Den(), rate.Num()))
	e.context.SetFramerate(rate)
	e.context.SetSampleAspectRatio(astiav.NewRational(1, 1))
	if o.GOP > 0 {
		e.context.SetGopSize(o.GOP)
	}
	if o.Threads > 0 {
		e.context.SetThreadCount(o.Threads)
	}
	if o.GlobalHeader {
		e.context.SetFlags(e.context.Flags().Add(astiav.CodecContextFlagGlobalHeader))
	}

	dict := astiav.NewDictionary()
	defer dict.Free()
	settings := map[string]string{}
	if o.Preset != "" {
		settings["preset"] = o.Preset
	}
	settings["crf"] = strconv.Itoa(o.CRF)
	for key, value := range o.Options {
		settings[key] = value
	}
	for key, value := range settings {
		if err := dict.Set(key, value, 0); err != nil {
			return fmt.Errorf("set encoder option %s=%s: %w", key, value, err)
		}
	}

	if err := e.context.Open(codec, dict); err != nil {
		return fmt.Errorf("open encoder %s (%dx%d at %.3f fps): %w", o.Codec, o.Width, o.Height, o.FrameRate, err)
	}

	return e.allocateFrames()
}

func (e *encoder) allocateFrames() error {
	w, h := e.options.Width, e.options.Height

	e.bgr = astiav.AllocFrame()
	e.bgr.SetWidth(w)
	e.bgr.SetHeight(h)
	e.bgr.SetPixelFormat(astiav.PixelFormatBgr24)
	if err := e.bgr.AllocBuffer(0); err != nil {
		return fmt.Errorf("allocate BGR frame %dx%d: %w", w, h, err)
	}

	e.yuv = astiav.AllocFrame()
	e.yuv.SetWidth(w)
	e.yuv.SetHeight(h)
	e.yuv.SetPixelFormat(astiav.PixelFormatYuv420P)
	if err := e.yuv.AllocBuffer(0); err != nil {
		return fmt.Errorf("allocate YUV frame %dx%d: %w", w, h, err)
	}

	var err error
	e.scaler, err = astiav.CreateSoftwareScaleContext(w, h, astiav.PixelFormatBgr24, w, h,
		astiav.PixelFormatYuv420P, astiav.NewSoftwareScaleContextFlags(astiav.SoftwareScaleContextFlagBilinear))
	if err != nil {
		return fmt.Errorf("create BGR to YUV converter: %w", err)
	}

	e.packet = astiav.AllocPacket()
	return nil
}

// encode compresses one frame and calls emit for every packet that is ready.
// The packet's timestamps are in the encoder time base; emit must not keep it.
func (e *encoder) encode(f *Frame, emit func(*astiav.Packet) error) error {
	if f.Width != e.options.Width || f.Height != e.options.Height {
		return fmt.Errorf("frame %d is %dx%d, the encoder was opened for %dx%d",
			f.Index, f.Width, f.Height, e.options.Width, e.options.Height)
	}

	if err := copyPackedIntoFrame(e.bgr, f); err != nil {
		return err
	}
	if err := makeWritable(e.yuv); err != nil {
		return err
	}
	if err := e.scaler.ScaleFrame(e.bgr, e.yuv); err != nil {
		return fmt.Errorf("convert frame %d to YUV: %w", f.Index, err)
	}

	// An I picture type makes libx264 and libvpx start a new GOP here.
	pictureType := astiav.PictureTypeNone
	if e.keyframe {
		pictureType = astiav.PictureTypeI
		e.keyframe = false
	}
	e.yuv.SetPictureType(pictureType)

	e.yuv.SetPts(e.next)
	e.next++
	if err := e.context.SendFrame(e.yuv); err != nil {
		return fmt.Errorf("encode frame %d: %w", f.Index, err)
	}

	return e.drain(emit)
}

// flush drains the frames the encoder still buffers.
func (e *encoder) flush(emit func(*astiav.Packet) error) error {
	if err := e.context.SendFrame(nil); err != nil && !errors.Is(err, astiav.ErrEof) {
		return fmt.Errorf("flush encoder: %w", err)
	}
	return e.drain(emit)
}

func (e *encoder) drain(emit func(*astiav.Packet) error) error {
	for {
		err := e.context.ReceivePacket(e.packet)
		if errors.Is(err, astiav.ErrEagain) || errors.Is(err, astiav.ErrEof) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receive encoded packet: %w", err)
		}

		// Every frame lasts one tick of the 1/rate time base. Without a
		// duration the mp4 muxer's edit list hides the last frame.
		e.packet.SetDuration(1)
		err = emit(e.packet)
		e.packet.Unref()
		if err != nil {
			return err
		}
	}
}

func (e *encoder) close() {
	if e.packet != nil {
		e.packet.Free()
		e.packet = nil
	}
	for _, frame := range []**astiav.Frame{&e.bgr, &e.yuv} {
		if *frame != nil {
			(*frame).Free()
			*frame = nil
		}
	}
	if e.scaler != nil {
		e.scaler.Free()
		e.scaler = nil
	}
	if e.context != nil {
		e.context.Free()
		e.context = nil
	}
}

// rationalFromRate turns a frame rate into a rational, keeping NTSC rates
// such as 29.97 exact (30000/1001).
func rationalFromRate(rate float64) astiav.Rational {
	whole := math.Round(rate * 1.001)
	if math.Abs(rate-math.Round(rate)) > 1e-3 && math.Abs(rate-whole*1000/1001) < 1e-3 {
		return astiav.NewRational(int(whole)*1000, 1001)
	}

	num, den := int64(math.Round(rate*1000)), int64(1000)
	g := gcd(num, den)
	return astiav.NewRational(int(num/g), int(den/g))
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
