package trainer

import (
	"bytes"
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Colours of the report's figures.
var (
	colourTrain    = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	colourVal      = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	colourKept     = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	colourDropped  = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	colourSeed     = color.RGBA{R: 148, G: 103, B: 189, A: 255}
	colourFiltered = color.RGBA{R: 140, G: 86, B: 75, A: 255}
)

// figure is one PNG of the report.
type figure struct {
	plot *plot.Plot
}

func newFigure(title, x, y string) figure {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	return figure{plot: p}
}

// unitTicks labels a y axis of scores in [0, 1], which reaches above 1
// only to make room for the legend.
var unitTicks = plot.ConstantTicks([]plot.Tick{
	{Value: 0, Label: "0"}, {Value: 0.2, Label: "0.2"}, {Value: 0.4, Label: "0.4"},
	{Value: 0.6, Label: "0.6"}, {Value: 0.8, Label: "0.8"}, {Value: 1, Label: "1"},
})

// scoreAxis sets the y axis of a plot of scores in [0, 1].
func (f figure) scoreAxis() {
	f.plot.Y.Min, f.plot.Y.Max = 0, legendRoom
	f.plot.Y.Tick.Marker = unitTicks
}

// line adds a polyline with points and a legend entry.
func (f figure) line(name string, xys plotter.XYs, colour color.Color, dashed bool) error {
	line, points, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("plot %q: %w", name, err)
	}
	line.Color = colour
	line.Width = vg.Points(1.5)
	if dashed {
		line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	points.Color = colour
	points.Shape = draw.CircleGlyph{}
	points.Radius = vg.Points(2)
	f.plot.Add(line, points)
	f.plot.Legend.Add(name, line, points)
	return nil
}

// points adds markers without a line.
func (f figure) points(name string, xys plotter.XYs, colour color.Color, shape draw.GlyphDrawer, radius float64) error {
	if len(xys) == 0 {
		return nil
	}
	scatter, err := plotter.NewScatter(xys)
	if err != nil {
		return fmt.Errorf("plot %q: %w", name, err)
	}
	scatter.Color = colour
	scatter.Shape = shape
	scatter.Radius = vg.Points(radius)
	f.plot.Add(scatter)
	f.plot.Legend.Add(name, scatter)
	return nil
}

// horizontal adds a dashed horizontal line at y across the x range.
func (f figure) horizontal(name string, y, x0, x1 float64, colour color.Color) error {
	line, err := plotter.NewLine(plotter.XYs{{X: x0, Y: y}, {X: x1, Y: y}})
	if err != nil {
		return fmt.Errorf("plot %q: %w", name, err)
	}
	line.Color = colour
	line.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
	f.plot.Add(line)
	f.plot.Legend.Add(name, line)
	return nil
}

// legendRoom is how far above the data the y axis reaches, as a factor of
// the data's top, so the legend in the top right corner covers no point.
const legendRoom = 1.4

// png renders the figure at 8 x 3.6 inches.
func (f figure) png() ([]byte, error) {
	writer, err := f.plot.WriterTo(8*vg.Inch, 3.6*vg.Inch, "png")
	if err != nil {
		return nil, fmt.Errorf("render figure %q: %w", f.plot.Title.Text, err)
	}
	var buf bytes.Buffer
	if _, err := writer.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("render figure %q: %w", f.plot.Title.Text, err)
	}
	return buf.Bytes(), nil
}

// lossFigure plots the training and validation loss per epoch.
func lossFigure(h *TrainHistory) (figure, error) {
	f := newFigure("Loss per epoch", "epoch", "loss (BCE + Dice + boundary)")
	var train, val plotter.XYs
	for _, e := range h.Epochs {
		train = append(train, plotter.XY{X: float64(e.Epoch), Y: e.TrainLoss})
		val = append(val, plotter.XY{X: float64(e.Epoch), Y: e.ValLoss})
	}
	if err := f.line("training", train, colourTrain, false); err != nil {
		return f, err
	}
	if h.ValidationFrames > 0 {
		if err := f.line("validation", val, colourVal, true); err != nil {
			return f, err
		}
	}
	f.plot.Y.Min = 0
	f.plot.Y.Max *= legendRoom
	return f, nil
}

// diceFigure plots the training and validation Dice per epoch.
func diceFigure(h *TrainHistory) (figure, error) {
	f := newFigure("Dice per epoch (against pseudo-labels)", "epoch", "Dice")
	var train, val plotter.XYs
	for _, e := range h.Epochs {
		train = append(train, plotter.XY{X: float64(e.Epoch), Y: e.TrainDice})
		val = append(val, plotter.XY{X: float64(e.Epoch), Y: e.ValDice})
	}
	if err := f.line("training", train, colourTrain, false); err != nil {
		return f, err
	}
	if h.ValidationFrames > 0 {
		if err := f.line("validation", val, colourVal, true); err != nil {
			return f, err
		}
	}
	f.scoreAxis()
	return f, nil
}

// consistencyFigure plots the warp IoU of every frame, kept, dropped and
// seed frames apart, with the filter's threshold. The title ends with
// titleSuffix.
func consistencyFigure(r *FilterReport, titleSuffix string) (figure, error) {
	f := newFigure("Propagation consistency per frame"+titleSuffix, "frame number", "warp IoU")
	var kept, dropped, seeds plotter.XYs
	for _, d := range r.Frames {
		xy := plotter.XY{X: float64(d.Number), Y: d.IoU}
		switch {
		case d.Seed:
			seeds = append(seeds, xy)
		case d.Kept:
			kept = append(kept, xy)
		default:
			dropped = append(dropped, xy)
		}
	}
	if err := f.points(fmt.Sprintf("kept (%d)", len(kept)), kept, colourKept, draw.CircleGlyph{}, 3); err != nil {
		return f, err
	}
	if err := f.points(fmt.Sprintf("dropped (%d)", len(dropped)), dropped, colourDropped, draw.CrossGlyph{}, 3.5); err != nil {
		return f, err
	}
	if err := f.points("seed", seeds, colourSeed, draw.TriangleGlyph{}, 4); err != nil {
		return f, err
	}
	if n := len(r.Frames); n > 0 {
		first, last := float64(r.Frames[0].Number), float64(r.Frames[n-1].Number)
		if err := f.horizontal("IoU threshold", r.IoUThreshold, first, last, color.Gray{Y: 90}); err != nil {
			return f, err
		}
	}
	f.scoreAxis()
	return f, nil
}

// accuracyFigure plots the Dice of every ground-truth frame for the
// pseudo-labels, the filtered pseudo-labels and the student. The title
// ends with titleSuffix.
func accuracyFigure(e *RunEvaluation, titleSuffix string) (figure, error) {
	f := newFigure("Dice per ground-truth frame (seed frames left out)"+titleSuffix, "frame number", "Dice")
	scores := func(ev *Evaluation) plotter.XYs {
		var xys plotter.XYs
		if ev == nil {
			return nil
		}
		for _, s := range ev.Frames {
			xys = append(xys, plotter.XY{X: float64(s.Number), Y: s.Dice})
		}
		return xys
	}
	if pseudo := scores(e.Pseudo); len(pseudo) > 0 {
		if err := f.line("pseudo-labels", pseudo, colourVal, true); err != nil {
			return f, err
		}
	}
	if err := f.points("filtered (kept frames)", scores(e.Filtered), colourFiltered, draw.SquareGlyph{}, 3.5); err != nil {
		return f, err
	}
	if student := scores(e.Student); len(student) > 0 {
		if err := f.line("student", student, colourKept, false); err != nil {
			return f, err
		}
	}
	f.scoreAxis()
	return f, nil
}
