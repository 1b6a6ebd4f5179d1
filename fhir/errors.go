package fhir

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrUnsupportedVersion means the server's CapabilityStatement does not declare FHIR 4.0.x.
	ErrUnsupportedVersion = errors.New("fhir: server is not FHIR R4 (4.0.x)")
	// ErrForeignURL means a link or reference pointed outside the source's base URL and was not followed.
	ErrForeignURL = errors.New("fhir: url outside the source's base")
	// ErrPagingLoop means a next link pointed back to a page already read.
	ErrPagingLoop = errors.New("fhir: paging loop")
	// ErrInvalidResponse means the server answered with something that is not the FHIR JSON it should be.
	ErrInvalidResponse = errors.New("fhir: invalid response")
	// ErrNotFound means the server answered 404 or 410 for a read.
	ErrNotFound = errors.New("fhir: not found")
)

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string
	Code        string
	Diagnostics string
}

// OutcomeError is a non-2xx answer from the server, with the OperationOutcome it carried when there was one.
//
// Error() reports the HTTP status and each issue's severity and code, but not Diagnostics: servers echo search
// parameters (patient ids, names) into diagnostics, so that text must not reach a log line. Callers that need it
// read the Issues field and keep it out of logs.
type OutcomeError struct {
	Op         string // what was being done, e.g. "search DiagnosticReport"
	StatusCode int
	Issues     []Issue
	RetryAfter string
}

func (e *OutcomeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: server answered HTTP %d", e.Op, e.StatusCode)
	for i, is := range e.Issues {
		if i == 0 {
			b.WriteString(" (OperationOutcome:")
		}
		fmt.Fprintf(&b, " %s/%s", orDash(is.Severity), orDash(is.Code))
		if i == len(e.Issues)-1 {
			b.WriteString(")")
		}
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotFound) true for 404 and 410.
func (e *OutcomeError) Is(target error) bool {
	return target == ErrNotFound && (e.StatusCode == 404 || e.StatusCode == 410)
}

// Temporary reports whether the status is one the client retries.
func (e *OutcomeError) Temporary() bool { return retryableStatus(e.StatusCode) }

// LimitError means a configured limit was reached. Retrieval stops with this error rather than returning a silently
// truncated record.
type LimitError struct {
	Op    string // e.g. "search Observation"
	Limit string // the limit's name, as in configuration: max_pages, max_resources, max_bytes, max_body_bytes, max_attachment_bytes, max_json_depth
	Value int64  // the configured value
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: limit %s (%d) reached", e.Op, e.Limit, e.Value)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func retryableStatus(code int) bool {
	switch code {
	case 429, 502, 503, 504:
		return true
	}
	return false
}
