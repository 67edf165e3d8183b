package stream

import "time"

// SourceState is the condition of the loop's input.
type SourceState string

const (
	// SourceConnecting means the source is being opened for the first time.
	SourceConnecting SourceState = "connecting"
	// SourcePlaying means frames are arriving.
	SourcePlaying SourceState = "playing"
	// SourceReconnecting means the source failed or ended and is being
	// reopened after a backoff delay.
	SourceReconnecting SourceState = "reconnecting"
	// SourceEnded means the source ended and will not be reopened.
	SourceEnded SourceState = "ended"
)

// SourceStatus is a snapshot of the input's condition, for the page and
// the metrics.
type SourceStatus struct {
	// URL is the input as given, with any credentials removed.
	URL string
	// State is the current condition.
	State SourceState
	// Since is when State began.
	Since time.Time
	// LastError is the error that ended the last connection, empty when none.
	LastError string
	// Reconnects counts the times the source was reopened after a failure
	// or an end.
	Reconnects int
	// NextAttempt is when the next reopen is due while reconnecting, zero
	// otherwise.
	NextAttempt time.Time
}

// SourceStatuser reports a source's condition; it is safe for concurrent
// use with Read.
type SourceStatuser interface {
	Status() SourceStatus
}
