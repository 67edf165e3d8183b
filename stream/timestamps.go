package stream

import "time"

// Timestamps records when a frame passed each stage of the loop. A zero
// time means the frame did not pass that stage.
type Timestamps struct {
	Captured  time.Time // read from the source (for files: when decoding started)
	Decoded   time.Time
	Segmented time.Time // model result or propagated mask ready
	Rendered  time.Time // overlay drawn
	Encoded   time.Time // written by the last sink
}

// Reset clears every stage.
func (t *Timestamps) Reset() { *t = Timestamps{} }
