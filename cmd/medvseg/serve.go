package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rs/zerolog/log"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/codec/synth"
	"github.com/medvseg/medvseg/segment/onnx"
	"github.com/medvseg/medvseg/stream"
	"github.com/medvseg/medvseg/web"
)

// synthInput is the --input value that selects the built-in synthetic clip.
const synthInput = "synth"

type serveOptions struct {
	loopOptions
	input        string
	inputFormat  string
	inputOptions []string
	loop         bool
	listen       string
	size         string
	codec        string
	bitRate      int

	token      string
	insecure   bool
	stamp      bool
	maxViewers int
}

// tokenEnv is the environment variable --token defaults to, so the token
// need not appear in the process list.
const tokenEnv = "MEDVSEG_TOKEN"

func newServeCommand(global *globalOptions) *cobra.Command {
	var o serveOptions

	cmd := &cobra.Command{
		Use:   "serve [--input VIDEO|synth|DEVICE|URL|lavfi:GRAPH] [--model model.onnx]",
		Short: "Stream the live lesion overlay to a browser over WebRTC",
		Long: `serve plays a video file at its native rate as a live source, or reads a
live input as its frames arrive. It segments the frames in real time (the
model on keyframes, optical flow in between, no frame waiting for the model)
and streams the overlay to a web page over WebRTC. Open the
printed URL in a browser: the page shows the video, the connection state,
frame rates, dropped frames and per-stage latency, and controls for the
overlay, its opacity, the threshold and the keyframe interval that act at once.

With --input synth (the default) it plays the built-in synthetic clip in a
loop; without --model it then segments with a fixed colour rule that finds
the synthetic lesion, so the overlay works with no trained model.

Live inputs:
  /dev/video0          a capture device (v4l2). Choose its mode with
                       --input-option input_format=mjpeg, video_size=1280x720
                       and framerate=30, one option per flag.
  rtsp://, rtsps://, udp://, rtp://, http://, https://, srt://
                       a network stream. For RTSP over TCP give
                       --input-option rtsp_transport=tcp; for raw MPEG-TS over
                       UDP, --input-format mpegts.
  lavfi:GRAPH          a libavfilter source, for example
                       lavfi:testsrc2=size=640x480:rate=30 (the same as
                       --input-format lavfi --input GRAPH).
When a live input fails, stalls for 5 s or ends, serve keeps running, the
page shows the input's state, and the input is reopened after a delay that
starts at 0.25 s and doubles up to 4 s, with random jitter. Frames keep the
size of the first open. If the input cannot be opened at start, serve starts
anyway when --size is given, once the first open fails (up to 5 s for a
silent stream), and keeps retrying; without --size it exits.

Several viewers may watch at once. Each has its own send queue, so a viewer
that stalls or leaves loses frames on its own, and one that joins gets a
keyframe at once.

Security: on a loopback --listen address only this machine can connect. Any
other address requires --token (or $MEDVSEG_TOKEN), which signalling, the
JSON API and /metrics then need as "Authorization: Bearer TOKEN"; viewers
open http://HOST:PORT/#token=TOKEN. --insecure serves without a token.

Monitoring: GET /healthz returns 200 while the input delivers frames and 503
while it connects or reconnects; GET /metrics exposes frame, drop, viewer,
source and latency figures in the Prometheus text format. With --stamp, each
frame carries its number in a row of black and white cells in the top left
corner; the page reads it back and shows glass-to-glass latency p50 and p95,
from the moment serve received the decoded frame to its display.

It stops on SIGINT or SIGTERM, closing every viewer's connection.`,
		Example: "  medvseg serve\n" +
			"  medvseg serve --input clip.mp4 --loop --model run/model.onnx --listen 127.0.0.1:8080\n" +
			"  medvseg serve --input /dev/video0 --input-option input_format=mjpeg --input-option video_size=1280x720 --model run/model.onnx\n" +
			"  medvseg serve --input rtsp://192.0.2.10/endoscope --input-option rtsp_transport=tcp --size 640x480 --model run/model.onnx",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(global, o)
		},
	}

	f := cmd.Flags()
	o.addFlags(f, "ONNX model to run on keyframes (default for synth: a colour rule)")
	f.StringVar(&o.input, "input", synthInput, "video file to play at its native rate, synth for the built-in clip, "+
		"or a live input: a capture device, a network stream URL or lavfi:GRAPH (see above)")
	f.StringVar(&o.inputFormat, "input-format", "", "input format, as ffmpeg's -f: v4l2, lavfi, mjpeg, mpegts... "+
		"(default: probed; v4l2 for /dev/video*)")
	f.StringArrayVar(&o.inputOptions, "input-option", nil, "demuxer, device or protocol option KEY=VALUE, "+
		"for example video_size=1280x720 or rtsp_transport=tcp (repeatable)")
	f.BoolVar(&o.loop, "loop", false, "play the input file again from the start when it ends (synth always loops; "+
		"live inputs reopen on their own)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "HTTP address (host:port) of the page and WebRTC signalling")
	f.StringVar(&o.size, "size", "", "scale frames to WxH pixels (default: the input's size, 320x240 for synth); "+
		"lets serve start before a live input is available")
	f.StringVar(&o.codec, "codec", codec.CodecVP8, "video codec sent to browsers: vp8 (libvpx) or h264 (libx264)")
	f.IntVar(&o.bitRate, "bitrate", 2_000_000, "target video bit rate in bits per second")
	f.StringVar(&o.token, "token", "", "bearer token that signalling, the API and /metrics require "+
		"(default: $"+tokenEnv+"); viewers open http://HOST:PORT/#token=TOKEN")
	f.BoolVar(&o.insecure, "insecure", false, "allow --listen on an address other than loopback without --token")
	f.IntVar(&o.maxViewers, "max-viewers", web.DefaultMaxPeers, "maximum viewer connections open at once, "+
		"counting those still connecting; more are rejected with 503")
	f.BoolVar(&o.stamp, "stamp", false, "draw each frame's number in the top left corner so the page can measure "+
		"glass-to-glass latency")

	return cmd
}

func runServe(global *globalOptions, o serveOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.token == "" {
		// Read here, not as the flag's default, so --help never prints it.
		o.token = os.Getenv(tokenEnv)
	}
	if err := checkToken(o.token); err != nil {
		return err
	}
	loopback, err := checkListen(o)
	if err != nil {
		return err
	}
	if o.maxViewers < 1 || o.maxViewers > maxViewersLimit {
		return fmt.Errorf("invalid --max-viewers %d: use 1 to %d", o.maxViewers, maxViewersLimit)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	input, err := openServeInput(ctx, o)
	if err != nil && ctx.Err() != nil {
		// SIGINT or SIGTERM while a live input was opening: a normal stop.
		log.Info().Msg("serve stopped before the input opened")
		return nil
	}
	if err != nil {
		return err
	}
	defer input.Close()
	info := input.Info()

	segmenter, threshold, closeModel, err := loadServeModel(global, o, info)
	if err != nil {
		return err
	}
	defer closeModel()

	processor, err := stream.NewLiveProcessor(segmenter, o.streamOptions(threshold))
	if err != nil {
		return err
	}
	defer processor.Close()

	sink, err := web.NewVideoSink(o.codec, info.Width, info.Height, info.FrameRate, o.bitRate,
		web.SinkOptions{Stamp: o.stamp}, log.Logger)
	if err != nil {
		return err
	}

	server, listener, err := listenServe(o, loopback, sink, processor, input)
	if err != nil {
		sink.Close(err)
		return err
	}

	log.Info().Str("input", info.URL).Int("width", info.Width).Int("height", info.Height).
		Float64("fps", info.FrameRate).Str("codec", o.codec).Int("keyframe_interval", o.interval).
		Str("listen", listener.Addr().String()).Msg("serve started")

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := processor.Run(ctx, input, sink)
		if err == nil && ctx.Err() == nil {
			log.Info().Str("input", info.URL).Msg("input ended; stopping")
			return errInputEnded
		}
		return err
	})
	g.Go(func() error { return server.Serve(ctx, listener) })

	err = g.Wait()
	if errors.Is(err, errInputEnded) {
		err = nil
	}
	stats := processor.Stats()
	log.Info().Uint64("frames", stats.OutputFrames).Uint64("keyframes", stats.Keyframes).
		Uint64("dropped", stats.Dropped).Msg("serve stopped")
	return err
}

// errInputEnded stops the server when a file that does not loop ends.
var errInputEnded = errors.New("input ended")

// servedInput is the source serve reads: a Pacer for files and synth, a
// Reconnector for live inputs.
type servedInput interface {
	stream.Source
	stream.SourceStatuser
	io.Closer
}

// openServeInput opens --input. A file or synth plays at its native rate
// through a Pacer, and a capture device, network stream or lavfi graph is
// read through a Reconnector.
func openServeInput(ctx context.Context, o serveOptions) (servedInput, error) {
	var size codec.Size
	if o.size != "" {
		parsed, err := codec.ParseSize(o.size)
		if err != nil {
			return nil, fmt.Errorf("--size: %w", err)
		}
		// VP8 and H.264 in 4:2:0 need even sides.
		if parsed.Width%2 != 0 || parsed.Height%2 != 0 {
			return nil, fmt.Errorf("invalid --size %s: the video encoders need an even width and height, "+
				"for example %dx%d", o.size, parsed.Width&^1, parsed.Height&^1)
		}
		size = parsed
	}

	if o.input == synthInput {
		return openSynthInput(ctx, size)
	}

	formatOptions, err := parseInputOptions(o.inputOptions)
	if err != nil {
		return nil, err
	}
	options := codec.ReaderOptions{Format: o.inputFormat, FormatOptions: formatOptions, Size: size}

	if !codec.ClassifyInput(o.input, o.inputFormat).Live() {
		open := func() (stream.Source, error) { return codec.Open(o.input, options) }
		return stream.NewPacer(ctx, open, o.loop)
	}

	if o.loop {
		return nil, errors.New("--loop applies to video files only: a live input is reopened when it ends")
	}
	paced := codec.PaceLavfi(o.input, o.inputFormat)
	open := func(ctx context.Context, size codec.Size) (stream.Source, error) {
		options := options
		options.Size = size
		return codec.OpenContext(ctx, paced, options)
	}
	input, err := stream.NewReconnector(ctx, open, stream.ReconnectorOptions{URL: o.input, Size: size})
	if errors.Is(err, stream.ErrSizeUnknown) {
		return nil, fmt.Errorf("%w; give --size WxH to start serve while the input is unavailable", err)
	}
	return input, err
}

// openSynthInput plays the built-in synthetic clip in a loop.
func openSynthInput(ctx context.Context, size codec.Size) (servedInput, error) {
	options := synth.DefaultOptions
	options.Width, options.Height = 320, 240
	if !size.IsZero() {
		options.Width, options.Height = size.Width, size.Height
	}
	scene, err := synth.NewScene(options)
	if err != nil {
		return nil, err
	}
	src := synth.NewSource(scene)
	open := func() (stream.Source, error) {
		src.Rewind()
		return src, nil
	}
	return stream.NewPacer(ctx, open, true)
}

// parseInputOptions turns --input-option KEY=VALUE flags into a map.
func parseInputOptions(flags []string) (map[string]string, error) {
	options := make(map[string]string, len(flags))
	for _, flag := range flags {
		key, value, found := strings.Cut(flag, "=")
		if !found || key == "" {
			return nil, fmt.Errorf("invalid --input-option %q: use KEY=VALUE, for example video_size=1280x720", flag)
		}
		options[key] = value
	}
	return options, nil
}

// loadServeModel loads --model, or for the synth input without one, the
// colour-rule network. It returns the threshold to use and a function that
// closes the model.
func loadServeModel(global *globalOptions, o serveOptions, info codec.Info) (stream.Segmenter, float64, func(), error) {
	path := o.model
	if path == "" {
		if o.input != synthInput {
			return nil, 0, nil, fmt.Errorf("--model is required for every input but synth (got --input %s): "+
				"give a model exported by `medvseg train-offline`", codec.RedactURL(o.input))
		}

		rulePath, cleanup, err := writeColourRule(info.Width, info.Height)
		if err != nil {
			return nil, 0, nil, err
		}
		defer cleanup()
		path = rulePath
		log.Info().Msg("no --model: segmenting the synthetic clip with the colour-rule network")
	}

	model, err := loadModel(global, path, o.device, o.threads)
	if err != nil {
		return nil, 0, nil, err
	}
	threshold := thresholdOr(o.threshold, float64(model.Info().Threshold))
	return stream.NewModelSegmenter(model), threshold, func() { model.Close() }, nil
}

// writeColourRule writes the colour-rule network for frames of the given
// size to a temporary file, since segment.LoadModel reads from a path.
func writeColourRule(width, height int) (string, func(), error) {
	model, err := onnx.ColourRule(width, height)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "medvseg-colour-rule-")
	if err != nil {
		return "", nil, fmt.Errorf("create a temporary folder for the colour-rule model: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }

	path := filepath.Join(dir, "colour-rule.onnx")
	if err := model.WriteFile(path); err != nil {
		cleanup()
		return "", nil, err
	}
	return path, cleanup, nil
}

// maxViewersLimit bounds --max-viewers: every viewer adds a writer
// goroutine and its share of the upload bandwidth.
const maxViewersLimit = 1000

// minTokenLength is the token length below which serve warns: a bearer
// token is the only lock on a server reachable from other machines.
const minTokenLength = 16

// checkToken rejects a token that no client could send intact and warns
// about a short one.
func checkToken(token string) error {
	if token == "" {
		return nil
	}
	if strings.IndexFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return errors.New("invalid --token: it contains spaces or control characters, which an Authorization " +
			"header cannot carry intact; use letters, digits and punctuation, for example from `openssl rand -hex 16`")
	}
	if len(token) < minTokenLength {
		log.Warn().Int("length", len(token)).Int("recommended", minTokenLength).
			Msg("--token is short and easy to guess; use a random one, for example from `openssl rand -hex 16`")
	}
	return nil
}

// checkListen reports whether --listen is a loopback address, and rejects
// any other address without a token unless --insecure is given.
func checkListen(o serveOptions) (bool, error) {
	loopback, err := isLoopback(o.listen)
	if err != nil {
		return false, err
	}
	if !loopback && o.token == "" && !o.insecure {
		return false, fmt.Errorf("--listen %s accepts connections from other machines: give a bearer token "+
			"with --token (or $%s), or --insecure to serve without one", o.listen, tokenEnv)
	}
	if !loopback && o.token == "" {
		log.Warn().Str("listen", o.listen).Msg("serving without a token on an address other than loopback (--insecure)")
	}
	return loopback, nil
}

// listenServe binds the HTTP address and prepares the web server. WebRTC is
// restricted to loopback when the address is a loopback one.
func listenServe(o serveOptions, loopback bool, sink *web.VideoSink, processor *stream.LiveProcessor,
	source stream.SourceStatuser) (*web.Server, net.Listener, error) {
	server, err := web.NewServer(web.Config{Sink: sink, Controls: processor, Source: source, Token: o.token,
		MaxPeers: o.maxViewers, LoopbackOnly: loopback, Logger: log.Logger})
	if err != nil {
		return nil, nil, err
	}
	listener, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %q: %w; choose a free port with --listen", o.listen, err)
	}
	return server, listener, nil
}

// isLoopback reports whether a host:port address is a loopback one.
func isLoopback(address string) (bool, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return false, fmt.Errorf("invalid --listen %q: use host:port, for example 127.0.0.1:8080", address)
	}
	if number, err := strconv.Atoi(port); err != nil || number < 0 || number > 65535 {
		return false, fmt.Errorf("invalid --listen %q: the port must be a number from 0 to 65535", address)
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback()), nil
}
