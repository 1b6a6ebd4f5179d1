package deid

import (
	"errors"
	"fmt"
	"time"
)

// Limits bound what Deidentify accepts. Zero fields take the DefaultLimits value.
type Limits struct {
	// MaxInputBytes bounds the input document.
	MaxInputBytes int64
	// MaxDepth bounds JSON nesting (FHIR resources rarely exceed 15; contained and extensions add a few).
	MaxDepth int
	// MaxStringBytes bounds one JSON string, including base64 attachments.
	MaxStringBytes int
	// MaxEntries bounds the number of Bundle entries.
	MaxEntries int
}

// DefaultLimits returns the limits used for zero Limits fields.
func DefaultLimits() Limits {
	return Limits{MaxInputBytes: 256 << 20, MaxDepth: 64, MaxStringBytes: 32 << 20, MaxEntries: 200_000}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxInputBytes <= 0 {
		l.MaxInputBytes = d.MaxInputBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxStringBytes <= 0 {
		l.MaxStringBytes = d.MaxStringBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	return l
}

// Options configure one Deidentify call.
type Options struct {
	// Profile is the compiled allow-list; nil means the embedded safe-harbor profile, compiled on every call
	// (callers that de-identify often load it once with LoadProfile).
	Profile *Profile
	// Key keys every pseudonym, the date shift and the imaging UIDs.
	Key Key
	// Scope is the review id. Pseudonyms, the date shift and UIDs are keyed by Key and Scope, so two reviews of
	// the same records cannot be linked, and all inputs of one review share one timeline.
	Scope string
	// Limits bound the input; zero fields take DefaultLimits.
	Limits Limits
	// Now is the clock for the age rule (age today of a living patient); nil means time.Now.
	Now func() time.Time
}

// Result is the output of Deidentify.
type Result struct {
	// Bundle is a FHIR R4 collection Bundle of the de-identified in-scope resources, as JSON.
	Bundle []byte
	// Report says what was done. It holds no PHI: counts, element paths, resource types, kinds.
	Report Report
	// Scanner is the residual scan built from this input, for checking documents made later from the output (the
	// packet) without indexing the input again.
	Scanner *Scanner
}

// InputError reports input that is not acceptable: invalid JSON or UTF-8, a limit exceeded, a missing key. It
// names positions and limits, never content.
type InputError struct {
	Reason string
	// Offset is the byte offset in the input where the problem was found, or -1.
	Offset int64
	err    error
}

// Unwrap returns the sentinel behind the error, if any (ErrKey).
func (e *InputError) Unwrap() error { return e.err }

func (e *InputError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("invalid input: %s (at byte %d)", e.Reason, e.Offset)
	}
	return "invalid input: " + e.Reason
}

// ResidualError reports that the residual scan found an identifying string of the input in the output, so the
// whole output was rejected. Path is the output element path, Kind the kind of identifier; the value is never
// included.
type ResidualError struct {
	Path string
	Kind string
}

func (e *ResidualError) Error() string {
	return fmt.Sprintf("de-identification rejected: residual %s found at %s", e.Kind, e.Path)
}

// ErrKey is returned (wrapped in an *InputError) for a missing or short key.
var ErrKey = errors.New("key secret must be at least 32 bytes")

// ErrInternal is returned, with no output, if the transformer hits a bug (a recovered panic).
var ErrInternal = errors.New("de-identification failed: internal error")

// maxShiftAttempts bounds the search for a date shift that does not reproduce the true birth date.
const maxShiftAttempts = 8

// Deidentify de-identifies one patient's FHIR R4 resources (a Bundle of any type, or a single resource) into a
// collection Bundle. It fails closed: if the residual scan finds any identifying string of the input in the
// output, it returns a *ResidualError and no output.
func Deidentify(input []byte, opts Options) (res *Result, err error) {
	defer func() {
		// A bug must not take the gateway down or let partial output out: fail closed, with no detail that
		// could carry input content.
		if r := recover(); r != nil {
			res, err = nil, ErrInternal
		}
	}()
	if len(opts.Key.Secret) < MinSecretBytes {
		return nil, &InputError{Reason: ErrKey.Error(), Offset: -1, err: ErrKey}
	}
	prof := opts.Profile
	if prof == nil {
		p, err := LoadProfile(DefaultProfile)
		if err != nil {
			return nil, err
		}
		prof = p
	}
	lim := opts.Limits.withDefaults()
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	tp, err := buildTape(input, lim)
	if err != nil {
		return nil, err
	}
	ix, err := indexInput(tp, prof, lim)
	if err != nil {
		return nil, err
	}
	keys := newKeyer(opts.Key, opts.Scope)
	m := ix.buildMatcher()
	var lastErr error
	for attempt := range maxShiftAttempts {
		tr := newTransformer(tp, ix, prof, keys, m, keys.dayShift(attempt), now())
		out, err := tr.run()
		if err == nil {
			tr.report.r.KeyID = opts.Key.ID
			tr.report.r.Profile = prof.Name
			tr.report.r.ProfileVersion = prof.Version
			return &Result{Bundle: out, Report: tr.report.finish(), Scanner: &Scanner{matchers: []*matcher{m}}}, nil
		}
		var re *ResidualError
		if errors.As(err, &re) && re.Kind == phiBirthDate.String() && tr.birthCollision {
			// A shifted date happened to equal the true birth date; the next keyed shift is used.
			lastErr = err
			continue
		}
		return nil, err
	}
	return nil, lastErr
}
