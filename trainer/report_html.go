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
	Report *Report
	// Figures are the training figures.
	Figures []string
	Clips   []*htmlClip
	// MultiClip is set for a run on a root of clips.
	MultiClip  bool
	HasGT      bool
	StageNames []string
}

// htmlClip is the part of the report about one clip.
type htmlClip struct {
	Report  ClipReport
	Figures []string
	Best    []thumbnail
	Worst   []thumbnail
	Spread  []thumbnail
	HasGT   bool
}

func (p *pipeline) writeHTMLReport(report *Report, in *reportInputs) error {
	folder, err := newStagedFolder(p.path(reportFolder))
	if err != nil {
		return err
	}
	defer folder.abort()

	data := &htmlReport{Report: report, MultiClip: p.multiClip(), HasGT: report.Student.MeanDice != nil}
	if data.Figures, err = writeFigures(folder, trainingFigures(in.history)); err != nil {
		return err
	}
	for i, c := range in.clips {
		clip := &htmlClip{HasGT: c.evaluation.Student != nil}
		if data.MultiClip {
			clip.Report = report.Clips[i]
		} else {
			clip.Report = summariseClip(c, in.history)
		}
		if clip.Figures, err = writeFigures(folder, clipFigures(c)); err != nil {
			return err
		}
		if err := writeThumbnails(folder, c, clip); err != nil {
			return err
		}
		data.Clips = append(data.Clips, clip)
	}
	for _, key := range p.stageKeys() {
		if _, ok := report.Seconds[key]; ok {
			data.StageNames = append(data.StageNames, key)
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

// stageKeys returns the names of the stages in stages.json in the order
// in which RunPipeline runs them.
func (p *pipeline) stageKeys() []string {
	var keys []string
	for _, c := range p.clips {
		for _, stage := range []string{StageExtract, StagePropagate, StageFilter} {
			keys = append(keys, stageKey(c, stage))
		}
	}
	keys = append(keys, StageTrain, StageExport)
	for _, stage := range []string{StageRender, StageEval} {
		for _, c := range p.clips {
			keys = append(keys, stageKey(c, stage))
		}
	}
	return keys
}

// namedFigure is a figure of the report and its file name in RUN/report/.
type namedFigure struct {
	name string
	make func() (figure, error)
}

func trainingFigures(h *TrainHistory) []namedFigure {
	return []namedFigure{
		{"loss.png", func() (figure, error) { return lossFigure(h) }},
		{"dice.png", func() (figure, error) { return diceFigure(h) }},
	}
}

// clipFigures returns the figures of one clip, whose names and titles
// carry the clip's name under a root of clips.
func clipFigures(c *clipInputs) []namedFigure {
	suffix, title := "", ""
	if name := c.clip.name; name != "" {
		suffix, title = "_"+name, ", clip "+name
	}
	figures := []namedFigure{
		{"consistency" + suffix + ".png", func() (figure, error) { return consistencyFigure(c.filter, title) }},
	}
	if c.evaluation.Student != nil {
		figures = append(figures, namedFigure{"accuracy" + suffix + ".png",
			func() (figure, error) { return accuracyFigure(c.evaluation, title) }})
	}
	return figures
}

// writeFigures writes the figures and returns their paths relative to the run.
func writeFigures(folder *stagedFolder, figures []namedFigure) ([]string, error) {
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
// truth, the ground-truth contour (red) on the best and worst frames of a
// clip by the student's Dice among those with a lesion, or on frames
// spread over the clip without ground truth.
func writeThumbnails(folder *stagedFolder, in *clipInputs, data *htmlClip) error {
	c := in.clip
	clip, err := OpenClip(c.path("frames"))
	if err != nil {
		return err
	}
	width, _, err := frameSize(clip.Frames[0].Path)
	if err != nil {
		return err
	}
	t := &thumbnailer{clip: clip, folder: folder, masks: c.path(masksFolderName), prefix: "thumb_"}
	if c.name != "" {
		t.prefix += c.name + "_"
	}
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
	clip   *Clip
	folder *stagedFolder
	// masks is the folder of the student's masks.
	masks string
	// prefix starts the file name of every thumbnail.
	prefix  string
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
	mask, err := codec.ReadGray(filepath.Join(t.masks, name))
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
	file := t.prefix + name
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
{{if .MultiClip}}<p>Run <code>{{.Report.Run}}</code>, written {{.Report.Created.Format "2006-01-02 15:04:05 UTC"}}.
{{len .Clips}} clips from <code>{{.Report.Source.Data}}</code>, {{.Report.Source.Frames}} frames in all.
Each clip was propagated and filtered on its own; one student was trained on the filtered pseudo-labels of all clips.
Outputs: <a href="model.onnx">model.onnx</a>, <a href="report.json">report.json</a>, and an overlay video per clip.</p>

<h2>Summary</h2>
<table>
<tr><th>clip</th><th>frames</th><th>seed frames</th><th>filtered</th><th>trained / validation</th>
<th>pseudo-label Dice</th><th>filtered Dice</th><th>student Dice</th><th>student IoU</th><th>overlay</th></tr>
{{range .Clips}}{{with .Report}}<tr><td>{{.Name}}</td><td>{{.Source.Frames}}</td>
<td>{{range $i, $s := .Source.Seeds}}{{if $i}}, {{end}}{{$s}}{{end}}</td>
<td>{{.Filtered.Kept}} kept, {{.Filtered.Dropped}} dropped</td><td>{{.TrainFrames}} / {{.ValidationFrames}}</td>
<td>{{score .Propagation.MeanDice}}</td><td>{{score .Filtered.MeanDice}}</td>
<td>{{score .Student.MeanDice}}</td><td>{{score .Student.MeanIoU}}</td><td><a href="{{.Overlay}}">overlay.mp4</a></td></tr>
{{end}}{{end}}{{with .Report}}<tr><th>all clips, pooled</th><th>{{.Source.Frames}}</th><th></th>
<th>{{.Filtered.Kept}} kept, {{.Filtered.Dropped}} dropped</th><th>{{.Training.TrainFrames}} / {{.Training.ValidationFrames}}</th>
<th>{{score .Propagation.MeanDice}}</th><th>{{score .Filtered.MeanDice}}</th>
<th>{{score .Student.MeanDice}}</th><th>{{score .Student.MeanIoU}}</th><th></th></tr>{{end}}
</table>
<p class="note">{{if .HasGT}}Scores are against each clip's ground truth on the frames that are not seeds: {{.Report.Student.GTFrames}} frames in all.
The pooled row averages over every scored frame of every clip, so a long clip weighs more than a short one;
the filtered column covers only the kept frames.{{else}}No ground truth was given, so there are no scores.{{end}}</p>
{{else}}{{with index .Clips 0}}<p>Run <code>{{$.Report.Run}}</code>, written {{$.Report.Created.Format "2006-01-02 15:04:05 UTC"}}.
Frames from <code>{{if .Report.Source.Video}}{{.Report.Source.Video}}{{else}}{{.Report.Source.Data}}{{end}}</code>:
{{.Report.Source.Frames}} frames. Seed frames: {{range $i, $s := .Report.Source.Seeds}}{{if $i}}, {{end}}{{$s}}{{end}}.
Outputs: <a href="model.onnx">model.onnx</a>, <a href="overlay.mp4">overlay.mp4</a>, <a href="report.json">report.json</a>.</p>

<h2>Summary</h2>
<table>
<tr><th></th><th>frames</th><th>mean Dice</th><th>mean IoU</th><th>mean boundary F</th></tr>
{{with $.Report}}<tr><td>pseudo-labels</td><td>{{.Propagation.Frames}} ({{.Propagation.EmptyFrames}} empty)</td>
<td>{{score .Propagation.MeanDice}}</td><td>{{score .Propagation.MeanIoU}}</td><td>{{score .Propagation.BoundaryF}}</td></tr>
<tr><td>filtered pseudo-labels</td><td>{{.Filtered.Kept}} kept, {{.Filtered.Dropped}} dropped</td>
<td>{{score .Filtered.MeanDice}}</td><td>{{score .Filtered.MeanIoU}}</td><td>{{score .Filtered.BoundaryF}}</td></tr>
<tr><td>student</td><td>{{.Source.Frames}}</td>
<td>{{score .Student.MeanDice}}</td><td>{{score .Student.MeanIoU}}</td><td>{{score .Student.BoundaryF}}</td></tr>{{end}}
</table>
<p class="note">{{if $.HasGT}}Scores are against the ground truth in <code>{{$.Report.GT}}</code> on {{$.Report.Student.GTFrames}} frames that are not seeds;
the filtered row covers only the kept frames among them.{{else}}No ground truth was given, so there are no scores.{{end}}</p>
{{end}}{{end}}
<h2>Training</h2>
{{with .Report.Training}}<p>{{.Epochs}} epochs on {{.TrainFrames}} filtered frames{{if $.MultiClip}} of all clips{{end}}.
{{if .ValidationFrames}}Validation on {{.ValidationFrames}} held-out pseudo-labels, those of the frames nearest a seed frame, where propagation has drifted least; best epoch {{.BestEpoch}} with validation Dice {{printf "%.3f" .BestValidationDice}}.
{{else}}No frames were held out for validation, so the best epoch, {{.BestEpoch}}, is the one with the highest training Dice ({{printf "%.3f" .BestValidationDice}}).{{end}}
The model is the checkpoint of the best epoch.</p>{{end}}
{{range .Figures}}<img class="figure" src="{{.}}" alt="{{.}}">
{{end}}
{{range .Clips}}
{{if $.MultiClip}}<h2>Clip {{.Report.Name}}</h2>
<p>Frames in <code>{{.Report.Dir}}</code>, overlay <a href="{{.Report.Overlay}}">{{.Report.Overlay}}</a>.</p>{{else}}<h2>Propagation and accuracy</h2>{{end}}
{{range .Figures}}<img class="figure" src="{{.}}" alt="{{.}}">
{{end}}
<h3>Overlay thumbnails</h3>
<p class="note">Green: the student's mask.{{if .HasGT}} Red: the ground-truth contour.{{end}}</p>
{{if .Best}}<h3>Best frames by student Dice, among frames with a lesion</h3>
<div class="strip">{{range .Best}}<figure><img src="{{.File}}" alt="{{.Caption}}"><figcaption>{{.Caption}}</figcaption></figure>{{end}}</div>{{end}}
{{if .Worst}}<h3>Worst frames by student Dice, among frames with a lesion</h3>
<div class="strip">{{range .Worst}}<figure><img src="{{.File}}" alt="{{.Caption}}"><figcaption>{{.Caption}}</figcaption></figure>{{end}}</div>{{end}}
{{if .Spread}}<div class="strip">{{range .Spread}}<figure><img src="{{.File}}" alt="{{.Caption}}"><figcaption>{{.Caption}}</figcaption></figure>{{end}}</div>{{end}}
{{end}}
<h2>Stages</h2>
<table><tr><th>stage</th><th>duration when last run</th></tr>
{{range .StageNames}}<tr><td>{{.}}</td><td>{{seconds (index $.Report.Seconds .)}}</td></tr>
{{end}}</table>
</body>
</html>
`))
