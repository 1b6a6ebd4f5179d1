package sandbox

import (
	"fmt"
	"net/http"

	"github.com/go-json-experiment/json"
)

// fhirJSON is the content type of every FHIR JSON response the sandbox sends.
const fhirJSON = "application/fhir+json; charset=utf-8"

// apiError is a failure reported to the client as an OperationOutcome. The HTTP status travels with the error so
// that it is decided once, where the error is created, and rendered in exactly one place (errorResponse).
// Messages are plain and never quote resource content or search values, which may be identifiers.
type apiError struct {
	status int
	code   string // OperationOutcome.issue.code, e.g. not-found, invalid, not-supported
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// response is a fully built HTTP response. Handlers return one instead of writing to the ResponseWriter so that
// faults can replace, rewrite, truncate or slow the body afterwards.
type response struct {
	status      int
	contentType string
	header      http.Header // extra headers, may be nil
	body        []byte
}

func jsonResponse(status int, body []byte) *response {
	return &response{status: status, contentType: fhirJSON, body: body}
}

type outcomeIssue struct {
	Severity    string `json:"severity"`
	Code        string `json:"code"`
	Diagnostics string `json:"diagnostics,omitempty"`
}

type operationOutcome struct {
	ResourceType string         `json:"resourceType"`
	Issue        []outcomeIssue `json:"issue"`
}

// outcome renders an OperationOutcome with a single error issue.
func outcome(code, msg string) []byte {
	b, err := json.Marshal(operationOutcome{
		ResourceType: "OperationOutcome",
		Issue:        []outcomeIssue{{Severity: "error", Code: code, Diagnostics: msg}},
	})
	if err != nil { // cannot happen for this fixed shape; keep the response well-formed regardless
		return []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
	}
	return b
}

// errorResponse is the one place an error becomes an HTTP status and an OperationOutcome body.
func errorResponse(err error) *response {
	e, ok := err.(*apiError)
	if !ok {
		e = &apiError{status: http.StatusInternalServerError, code: "exception", msg: "internal server error"}
	}
	return jsonResponse(e.status, outcome(e.code, e.msg))
}

// issueCodeForStatus picks the OperationOutcome issue code that best matches an injected HTTP status.
func issueCodeForStatus(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "throttled"
	case status == http.StatusUnauthorized:
		return "login"
	case status == http.StatusForbidden:
		return "forbidden"
	case status == http.StatusNotFound:
		return "not-found"
	case status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout:
		return "transient"
	case status >= 500:
		return "exception"
	case status >= 400:
		return "invalid"
	default:
		return "informational"
	}
}
