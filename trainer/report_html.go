package trainer

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"path/filepath"
	"sort"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// reportFolder is the folder of the run with the report's PNGs, which
// report.html links by relative path.
const reportFolder = "report"

// thumbnailWidth is the width of the overlay thumbnails in pixels.
const thumbnailWidth = 240

// thumbnailCount is how many best and how many worst frames are shown.
const thumbnailCount = 4

// thumbnail is one overlay thumbnail of the report.
type thumbnail struct {
	File    string
	Caption string
}

// htmlReport is the data of the report template.
type htmlReport struct {
	Report     *Report
	Figures    []string
	Best       []thumbnail
	Worst      []thumbnail
	Spread     []thumbnail
	HasGT      bool
	StageNames []string
}

func (p *pipeline) writeHTMLReport(report *Report, in *reportInputs) error {
	folder, err := newStagedFolder(p.path(reportFolder))
	if err != nil {
		return err
	}
	defer folder.abort()

	data := &htmlReport{Report: report, HasGT: in.evaluation.Student != nil}
	figures, err := p.writeFigures(folder, in)
	if err != nil {
		return err
	}
	data.Figures = figures
	if err := p.writeThumbnails(folder, in, data); err != nil {
		return err
	}
	for _, stage := range []string{StageExtract, StagePropagate, StageFilter, StageTrain, StageExport,
		StageRender, StageEval} {
		if _, ok := report.Seconds[stage]; ok {
			data.StageNames = append(data.StageNames, stage)
		}
	}

	var page bytes.Buffer
	if err := reportTemplate.Execute(&page, data); err != nil {
		return fmt.Errorf("write report.html: %w", err)
	}
	if err := folder.commit(); err != nil {
		return err
	}
	return writeFileAtomic(p.path("report.html"), page.Bytes())
}

// writeFigures writes the plots and returns their paths relative to the run.
func (p *pipeline) writeFigures(folder *stagedFolder, in *reportInputs) ([]string, error) {
	type named struct {
		name string
		make func() (figure, error)
	}
	figures := []named{
		{"loss.png", func() (figure, error) { return lossFigure(in.history) }},
		{"dice.png", func() (figure, error) { return diceFigure(in.history) }},
		{"consistency.png", func() (figure, error) { return consistencyFigure(in.filter) }},
	}
	if in.evaluation.Student != nil {
		figures = append(figures, named{"accuracy.png", func() (figure, error) { return accuracyFigure(in.evaluation) }})
	}

	var paths []string
	for _, f := range figures {
		fig, err := f.make()
		if err != nil {
			return nil, err
		}
		png, err := fig.png()
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(folder.path(f.name), png); err != nil {
			return nil, err
		}
		paths = append(paths, reportFolder+"/"+f.name)
	}
	return paths, nil
}

// writeThumbnails draws the student's mask (green) and, with ground
// truth, the ground-truth contour (red) on the best and worst frames by
// the student's Dice among those with a lesion, or on frames spread over
// the clip without ground truth.
func (p *pipeline) writeThumbnails(folder *stagedFolder, in *reportInputs, data *htmlReport) error {
	clip, err := OpenClip(p.path("frames"))
	if err != nil {
		return err
	}
	width, _, err := frameSize(clip.Frames[0].Path)
	if err != nil {
		return err
	}
	t := &thumbnailer{clip: clip, folder: folder, run: p.options.Out}
	defer t.close()

	// Contours 2 pixels wide after the reduction to thumbnailWidth.
	line := max(2, 2*width/thumbnailWidth)
	student := segment.DefaultOverlayOptions
	student.LineWidth = line
	if t.student, err = segment.NewOverlay(student); err != nil {
		return err
	}

	if student := in.evaluation.Student; student != nil {
		contour := segment.OverlayOptions{Colour: color.RGBA{R: 255, A: 255}, LineWidth: line}
		if t.gt, err = segment.NewOverlay(contour); err != nil {
			return err
		}
		gt := in.evaluation.GT
		scores, err := framesWithLesion(student.Frames, gt)
		if err != nil {
			return err
		}
		sort.SliceStable(scores, func(i, j int) bool { return scores[i].Dice > scores[j].Dice })
		// The worst frames are those not shown among the best.
		n := min(thumbnailCount, (len(scores)+1)/2)
		for _, s := range scores[:n] {
			thumb, err := t.write(s.Number, filepath.Join(gt, s.Frame), fmt.Sprintf("Dice %.3f", s.Dice))
			if err != nil {
				return err
			}
			data.Best = append(data.Best, thumb)
		}
		for i := len(scores) - 1; i >= max(n, len(scores)-n); i-- {
			s := scores[i]
			thumb, err := t.write(s.Number, filepath.Join(gt, s.Frame), fmt.Sprintf("Dice %.3f", s.Dice))
			if err != nil {
				return err
			}
			data.Worst = append(data.Worst, thumb)
		}
		return nil
	}

	count := min(2*thumbnailCount, len(clip.Frames))
	for i := range count {
		index := i * (len(clip.Frames) - 1) / max(count-1, 1)
		thumb, err := t.writeIndex(index, "", "")
		if err != nil {
			return err
		}
		data.Spread = append(data.Spread, thumb)
	}
	return nil
}

// framesWithLesion returns the scores of the frames whose ground truth
// marks a lesion: a frame where both masks are empty scores a Dice of 1
// and shows nothing. It returns every score when no frame has a lesion.
func framesWithLesion(scores []FrameScore, gtDir string) ([]FrameScore, error) {
	var kept []FrameScore
	for _, s := range scores {
		mask, _, err := segment.ReadMask(filepath.Join(gtDir, s.Frame))
		if err != nil {
			return nil, err
		}
		if countForeground(mask) > 0 {
			kept = append(kept, s)
		}
	}
	if len(kept) == 0 {
		return append([]FrameScore(nil), scores...), nil
	}
	return kept, nil
}

// thumbnailer draws overlay thumbnails of the run's frames.
type thumbnailer struct {
	clip    *Clip
	folder  *stagedFolder
	run     string
	student *segment.Overlay
	gt      *segment.Overlay
	frame   codec.Frame
	small   codec.Frame
}

func (t *thumbnailer) close() {
	if t.student != nil {
		t.student.Close()
	}
	if t.gt != nil {
		t.gt.Close()
	}
}

func (t *thumbnailer) write(number int, gtPath, caption string) (thumbnail, error) {
	index, err := t.clip.Index(number)
	if err != nil {
		return thumbnail{}, err
	}
	return t.writeIndex(index, gtPath, caption)
}

func (t *thumbnailer) writeIndex(index int, gtPath, caption string) (thumbnail, error) {
	name := t.clip.Frames[index].Name
	if err := codec.ReadPNG(t.clip.Frames[index].Path, &t.frame); err != nil {
		return thumbnail{}, err
	}
	mask, err := codec.ReadGray(filepath.Join(t.run, masksFolderName, name))
	if err != nil {
		return thumbnail{}, err
	}
	if err := t.student.Draw(&t.frame, mask); err != nil {
		return thumbnail{}, err
	}
	if gtPath != "" {
		gt, _, err := segment.ReadMask(gtPath)
		if err != nil {
			return thumbnail{}, err
		}
		if err := t.gt.Draw(&t.frame, gt); err != nil {
			return thumbnail{}, err
		}
	}

	height := t.frame.Height * thumbnailWidth / t.frame.Width
	if err := resizeFrame(&t.frame, &t.small, thumbnailWidth, max(height, 1)); err != nil {
		return thumbnail{}, err
	}
	file := "thumb_" + name
	if err := codec.WritePNG(t.folder.path(file), &t.small); err != nil {
		return thumbnail{}, err
	}
	label := fmt.Sprintf("frame %d", t.clip.Frames[index].Number)
	if caption != "" {
		label += ", " + caption
	}
	return thumbnail{File: reportFolder + "/" + file, Caption: label}, nil
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"score": func(v *float64) string {
		if v == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.3f", *v)
	},
	"seconds": func(v float64) string { return fmt.Sprintf("%.1f s", v) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>medvseg run report</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img.figure { max-width: 100%; display: block; margin: 0.5em 0; }
.strip { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; } figcaption { font-size: 0.85em; text-align: center; }
.note { color: #555; font-size: 0.9em; }
</style>
</head>
<body>
<h1>medvseg run report</h1>
<p>Run <code>{{.Report.Run}}</code>, written {{.Report.Created.Format "2006-01-02 15:04:05 UTC"}}.
Frames from <code>{{if .Report.Source.Video}}{{.Report.Source.Video}}{{else}}{{.Report.Source.Data}}{{end}}</code>:
{{.Report.Source.Frames}} frames. Seed frames: {{range $i, $s := .Report.Source.Seeds}}{{if $i}}, {{end}}{{$s}}{{end}}.
Outputs: <a href="model.onnx">model.onnx</a>, <a href="overlay.mp4">overlay.mp4</a>, <a href="report.json">report.json</a>.</p>

<h2>Summary</h2>
<table>
<tr><th></th><th>frames</th><th>mean Dice</th><th>mean IoU</th><th>mean boundary F</th></tr>
<tr><td>pseudo-labels</td><td>{{.Report.Propagation.Frames}} ({{.Report.Propagation.EmptyFrames}} empty)</td>
<td>{{score .Report.Propagation.MeanDice}}</td><td>{{score .Report.Propagation.MeanIoU}}</td><td>{{score .Report.Propagation.BoundaryF}}</td></tr>
<tr><td>filtered pseudo-labels</td><td>{{.Report.Filtered.Kept}} kept, {{.Report.Filtered.Dropped}} dropped</td>
<td>{{score .Report.Filtered.MeanDice}}</td><td>{{score .Report.Filtered.MeanIoU}}</td><td>{{score .Report.Filtered.BoundaryF}}</td></tr>
<tr><td>student</td><td>{{.Report.Source.Frames}}</td>
<td>{{score .Report.Student.MeanDice}}</td><td>{{score .Report.Student.MeanIoU}}</td><td>{{score .Report.Student.BoundaryF}}</td></tr>
</table>
<p class="note">{{if .HasGT}}Scores are against the ground truth in <code>{{.Report.GT}}</code> on {{.Report.Student.GTFrames}} frames that are not seeds;
the filtered row covers only the kept frames among them.{{else}}No ground truth was given, so there are no scores.{{end}}</p>

<h2>Training</h2>
{{with .Report.Training}}<p>{{.Epochs}} epochs on {{.TrainFrames}} filtered frames.
{{if .ValidationFrames}}Validation on {{.ValidationFrames}} held-out pseudo-labels; best epoch {{.BestEpoch}} with validation Dice {{printf "%.3f" .BestValidationDice}}.
{{else}}No frames were held out for validation, so the best epoch, {{.BestEpoch}}, is the one with the highest training Dice ({{printf "%.3f" .BestValidationDice}}).{{end}}
The model is the checkpoint of the best epoch.</p>{{end}}
{{range .Figures}}<img class="figure" src="{{.}}" alt="{{.}}">
{{end}}

<h2>Overlay thumbnails</h2>
<p class="note">Green: the student's mask.{{if .HasGT}} Red: the ground-truth contour.{{end}}</p>
{{if .Best}}<h3>Best frames by student Dice, among frames with a lesion</h3>
<div class="strip">{{range .Best}}<figure><img src="{{.File}}" alt="{{.Caption}}"><figcaption>{{.Caption}}</figcaption></figure>{{end}}</div>{{end}}
{{if .Worst}}<h3>Worst frames by student Dice, among frames with a lesion</h3>
<div class="strip">{{range .Worst}}<figure><img src="{{.File}}" alt="{{.Caption}}"><figcaption>{{.Caption}}</figcaption></figure>{{end}}</div>{{end}}
{{if .Spread}}<div class="strip">{{range .Spread}}<figure><img src="{{.File}}" alt="{{.Caption}}"><figcaption>{{.Caption}}</figcaption></figure>{{end}}</div>{{end}}

<h2>Stages</h2>
<table><tr><th>stage</th><th>duration when last run</th></tr>
{{range .StageNames}}<tr><td>{{.}}</td><td>{{seconds (index $.Report.Seconds .)}}</td></tr>
{{end}}</table>
</body>
</html>
`))
