package review

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// State is where a review is in its life.
type State string

// The states of a review.
const (
	AwaitingConsent State = "awaiting-consent"
	Consented       State = "consented"
	Assembling      State = "assembling"
	Ready           State = "ready"
	Expired         State = "expired"
	Withdrawn       State = "withdrawn"
	Failed          State = "failed"
)

// next lists the states each state may move to. Expired, withdrawn and failed are final.
var next = map[State][]State{
	AwaitingConsent: {Consented, Expired, Withdrawn, Failed},
	Consented:       {Assembling, Expired, Withdrawn, Failed},
	Assembling:      {Ready, Failed, Expired, Withdrawn},
	Ready:           {Expired, Withdrawn},
}

// CanMove reports whether a review in state from may move to state to.
func CanMove(from, to State) bool { return slices.Contains(next[from], to) }

// Final reports whether no move leaves s.
func (s State) Final() bool { return len(next[s]) == 0 }

// States returns every state, in the order of a review's life.
func States() []State {
	return []State{AwaitingConsent, Consented, Assembling, Ready, Expired, Withdrawn, Failed}
}

// Valid reports whether s is one of the states.
func (s State) Valid() bool {
	switch s {
	case AwaitingConsent, Consented, Assembling, Ready, Expired, Withdrawn, Failed:
		return true
	}
	return false
}

// Limits on a request, so that no caller can make the gateway store or fetch without bound.
const (
	MaxSources      = 10
	MaxQuestion     = 2000
	MaxLookBackDays = 36500
	maxIDLen        = 64
)

// SourceRequest names one source and, when the requester knows it, the patient's id there.
type SourceRequest struct {
	Source    string `json:"source"`
	PatientID string `json:"patient,omitempty"`
}

// Request is what an EHR integration asks for.
type Request struct {
	Sources       []SourceRequest `json:"sources"`
	Provider      string          `json:"provider"`
	ResourceTypes []string        `json:"resourceTypes,omitempty"`
	// LookBackDays limits reports and imaging to the last N days; 0 means everything.
	LookBackDays int `json:"lookBackDays,omitempty"`
	// Question is the clinical question for the specialist. It is free text and may name the patient, so it is
	// treated as PHI: stored, scrubbed before it reaches a packet, never logged.
	Question string `json:"question"`
}

// Review is a request with its identity and state.
type Review struct {
	ID        string    `json:"id"`
	Requester string    `json:"requester"`
	Request             // embedded: what was asked
	State     State     `json:"state"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// ExpiresAt is when consent, packet and access end.
	ExpiresAt time.Time `json:"expiresAt"`
	// Reason says why a review failed, in words safe to show the requester.
	Reason string `json:"reason,omitempty"`
	// Progress names the assembly stage while the review is assembling.
	Progress string `json:"progress,omitempty"`
}

// Assembly stages shown in a review's progress.
const (
	StageRetrieving    = "retrieving"
	StageDeidentifying = "de-identifying"
	StagePacking       = "packing"
)

// Problem is one thing wrong with a request.
type Problem struct {
	Field   string
	Message string
}

// InvalidError lists every problem with a request.
type InvalidError struct{ Problems []Problem }

func (e *InvalidError) Error() string {
	parts := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		parts = append(parts, p.Field+": "+p.Message)
	}
	return "invalid review request: " + strings.Join(parts, "; ")
}

// Catalog tells Validate what exists: the configured sources, the known providers, the retrievable types.
type Catalog struct {
	Sources   func(id string) bool
	Providers func(id string) bool
	Types     []string
}

// Validate reports every problem with the request at once, as an *InvalidError. Messages never repeat the
// caller's values (they may be PHI).
func (r *Request) Validate(c Catalog) error {
	var ps []Problem
	add := func(f, m string) { ps = append(ps, Problem{Field: f, Message: m}) }
	if len(r.Sources) == 0 {
		add("sources", "name at least one source")
	}
	// Past a list's limit, only the limit is reported: a problem per entry would let a small request draw a large
	// answer.
	sources := r.Sources
	if len(sources) > MaxSources {
		add("sources", fmt.Sprintf("at most %d sources", MaxSources))
		sources = nil
	}
	seen := map[string]bool{}
	for i, s := range sources {
		f := fmt.Sprintf("sources[%d]", i)
		switch {
		case !c.Sources(s.Source):
			add(f+".source", "is not a configured source")
		case seen[s.Source]:
			add(f+".source", "is named twice")
		}
		seen[s.Source] = true
		if s.PatientID != "" && !validFHIRID(s.PatientID) {
			add(f+".patient", "is not a FHIR id ([A-Za-z0-9.-]{1,64})")
		}
	}
	if r.Provider == "" || !c.Providers(r.Provider) {
		add("provider", "is not a known provider")
	}
	if len(r.ResourceTypes) > len(c.Types) {
		add("resourceTypes", fmt.Sprintf("at most %d types", len(c.Types)))
	} else {
		named := map[string]bool{}
		for i, t := range r.ResourceTypes {
			switch {
			case !slices.Contains(c.Types, t):
				add(fmt.Sprintf("resourceTypes[%d]", i), "is not a type the gateway retrieves ("+strings.Join(c.Types, ", ")+")")
			case named[t]:
				add(fmt.Sprintf("resourceTypes[%d]", i), "is named twice")
			}
			named[t] = true
		}
	}
	if r.LookBackDays < 0 || r.LookBackDays > MaxLookBackDays {
		add("lookBackDays", fmt.Sprintf("must be between 0 and %d", MaxLookBackDays))
	}
	if !utf8.ValidString(r.Question) {
		add("question", "is not valid UTF-8")
	} else if n := utf8.RuneCountInString(r.Question); n == 0 || n > MaxQuestion {
		add("question", fmt.Sprintf("must be 1 to %d characters", MaxQuestion))
	}
	if len(ps) > 0 {
		return &InvalidError{Problems: ps}
	}
	return nil
}

// New makes a review of a valid request, awaiting consent.
func New(requester string, req Request, now time.Time, validity time.Duration) (*Review, error) {
	id, err := NewID()
	if err != nil {
		return nil, err
	}
	now = now.UTC()
	return &Review{ID: id, Requester: requester, Request: req, State: AwaitingConsent, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(validity)}, nil
}

// NewID returns a random review id: 128 bits in lower-case base32, unguessable, since the patient's consent link
// carries it.
func NewID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new review id: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])), nil
}

// ValidID reports whether s has the shape of a review id; use it before s touches storage.
func ValidID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ErrTransition means a review cannot move from its current state to the one asked for.
var ErrTransition = errors.New("review: transition not allowed")

func validFHIRID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
