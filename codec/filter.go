package codec

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/asticode/go-astiav"
)

// filterChain is the libavfilter graph between the decoder and the caller:
// rotation, frame rate, scaling and conversion to packed BGR24.
type filterChain struct {
	graph    *astiav.FilterGraph
	source   *astiav.FilterContext
	sink     *astiav.FilterContext
	timeBase astiav.Rational

	width       int
	height      int
	pixelFormat astiav.PixelFormat
	flushed     bool
}

// filterDescription returns the libavfilter chain for a source that needs
// the given rotation and the options' frame rate and size, ending in bgr24.
func filterDescription(rotation int, options ReaderOptions) string {
	var steps []string
	switch rotation {
	case 90:
		steps = append(steps, "transpose=clock")
	case 180:
		steps = append(steps, "hflip", "vflip")
	case 270:
		steps = append(steps, "transpose=cclock")
	}

	if options.FPS > 0 {
		steps = append(steps, "fps="+strconv.FormatFloat(options.FPS, 'f', -1, 64))
	}

	if !options.Size.IsZero() {
		steps = append(steps, fmt.Sprintf("scale=%d:%d:flags=area", options.Size.Width, options.Size.Height))
	}

	steps = append(steps, "format=bgr24")
	return strings.Join(steps, ",")
}

func newFilterChain(first *astiav.Frame, timeBase astiav.Rational, info Info, options ReaderOptions) (*filterChain, error) {
	c := &filterChain{
		graph:       astiav.AllocFilterGraph(),
		width:       first.Width(),
		height:      first.Height(),
		pixelFormat: first.PixelFormat(),
	}

	if err := c.build(first, timeBase, filterDescription(info.Rotation, options)); err != nil {
		c.close()
		return nil, err
	}

	return c, nil
}

func (c *filterChain) build(first *astiav.Frame, timeBase astiav.Rational, description string) error {
	aspect := first.SampleAspectRatio()
	if aspect.Num() == 0 {
		aspect = astiav.NewRational(1, 1)
	}

	var err error
	c.source, err = c.graph.NewFilterContext(astiav.FindFilterByName("buffer"), "in", astiav.FilterArgs{
		"pix_fmt":      strconv.Itoa(int(first.PixelFormat())),
		"pixel_aspect": aspect.String(),
		"time_base":    timeBase.String(),
		"video_size":   fmt.Sprintf("%dx%d", first.Width(), first.Height()),
	})
	if err != nil {
		return fmt.Errorf("create filter source: %w", err)
	}

	c.sink, err = c.graph.NewFilterContext(astiav.FindFilterByName("buffersink"), "out", nil)
	if err != nil {
		return fmt.Errorf("create filter sink: %w", err)
	}

	outputs := astiav.AllocFilterInOut()
	defer outputs.Free()
	outputs.SetName("in")
	outputs.SetFilterContext(c.source)
	outputs.SetPadIdx(0)
	outputs.SetNext(nil)

	inputs := astiav.AllocFilterInOut()
	defer inputs.Free()
	inputs.SetName("out")
	inputs.SetFilterContext(c.sink)
	inputs.SetPadIdx(0)
	inputs.SetNext(nil)

	if err := c.graph.Parse(description, inputs, outputs); err != nil {
		return fmt.Errorf("parse filter %q: %w", description, err)
	}

	if err := c.graph.Configure(); err != nil {
		return fmt.Errorf("configure filter %q: %w", description, err)
	}

	c.timeBase = c.sink.Inputs()[0].TimeBase()
	return nil
}

// accepts reports whether a decoded frame has the size and pixel format the
// chain was built for; a stream that changes them needs a new chain.
func (c *filterChain) accepts(f *astiav.Frame) bool {
	return f.Width() == c.width && f.Height() == c.height && f.PixelFormat() == c.pixelFormat
}

func (c *filterChain) send(f *astiav.Frame) error {
	if err := c.source.BuffersrcAddFrame(f, astiav.NewBuffersrcFlags(astiav.BuffersrcFlagKeepRef)); err != nil {
		return fmt.Errorf("filter frame: %w", err)
	}
	return nil
}

// flush signals the end of input once, so the chain releases what it buffers.
func (c *filterChain) flush() error {
	if c == nil || c.flushed {
		return nil
	}

	c.flushed = true
	if err := c.source.BuffersrcAddFrame(nil, astiav.NewBuffersrcFlags()); err != nil {
		return fmt.Errorf("flush filter: %w", err)
	}
	return nil
}

func (c *filterChain) receive(f *astiav.Frame) error {
	return c.sink.BuffersinkGetFrame(f, astiav.NewBuffersinkFlags())
}

func (c *filterChain) close() {
	if c.graph != nil {
		c.graph.Free()
		c.graph = nil
	}
}
