package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// Problem is an RFC 9457 problem details object. Title and Detail are written for the caller and never carry PHI,
// tokens or upstream text.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Errors lists individual problems with the request (a field and what is wrong with it), when there are several.
	Errors []FieldProblem `json:"errors,omitempty"`
}

// FieldProblem names one invalid part of a request.
type FieldProblem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

// problemf builds a Problem for status with a caller-facing detail.
func problemf(status int, detail string) *Problem {
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
}

// errorHandler is the one place where an error becomes an HTTP status and body. Known error values map to their
// status; anything else is a 500 whose details go to the log (errors in this code base carry no PHI) and whose
// body says only that something went wrong.
func errorHandler(logger *slog.Logger, pg *pages) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var pe *pageError
		if errors.As(err, &pe) {
			renderMessage(c, pg, logger, pe)
			return
		}
		p := toProblem(err)
		if wantsHTML(c) && pg != nil {
			if p.Status >= 500 {
				logger.LogAttrs(c.Request().Context(), slog.LevelError, "request failed",
					slog.String("route", c.Path()), slog.String("error", err.Error()))
			}
			key := "error.generic"
			if p.Status == http.StatusNotFound {
				key = "error.notfound"
			}
			renderMessage(c, pg, logger, &pageError{status: p.Status, key: key})
			return
		}
		if p.Status >= 500 {
			logger.LogAttrs(c.Request().Context(), slog.LevelError, "request failed",
				slog.String("route", c.Path()), slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
				slog.String("error", err.Error()))
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(p.Status)
			return
		}
		body, merr := json.Marshal(p)
		if merr != nil {
			body = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		_ = c.Blob(p.Status, "application/problem+json", body)
	}
}

func toProblem(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		detail := ""
		switch he.Code {
		case http.StatusNotFound:
			detail = "There is nothing at this address."
		case http.StatusMethodNotAllowed:
			detail = "This address does not accept that method."
		case http.StatusRequestEntityTooLarge:
			detail = "The request body is larger than this endpoint accepts."
		case http.StatusUnsupportedMediaType:
			detail = "The request body's content type is not accepted here."
		case http.StatusServiceUnavailable:
			detail = "The request took too long; try again."
		}
		return problemf(he.Code, detail)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return problemf(http.StatusServiceUnavailable, "The request took too long; try again.")
	}
	return problemf(http.StatusInternalServerError, "Something went wrong on our side. It has been logged.")
}

// isAPI reports whether the request is for the API (/api and below) rather than a page.
func isAPI(c echo.Context) bool {
	p := c.Request().URL.Path
	return p == "/api" || strings.HasPrefix(p, "/api/")
}

// wantsHTML reports whether the request comes from a browser page (the patient's pages) rather than an API client.
// The API answers problem+json whatever the Accept header says: its clients, and openapi.yaml, rely on it.
func wantsHTML(c echo.Context) bool {
	if isAPI(c) {
		return false
	}
	accept := c.Request().Header.Get("Accept")
	return strings.Contains(accept, "text/html")
}

func renderMessage(c echo.Context, pg *pages, logger *slog.Logger, pe *pageError) {
	l := negotiate(c)
	v := messageView{L: l, Message: l.T(pe.key, pe.args...), Back: pe.back}
	if err := pg.render(c, pe.status, "message", v); err != nil {
		logger.LogAttrs(c.Request().Context(), slog.LevelError, "render message page", slog.String("error", err.Error()))
		_ = c.String(http.StatusInternalServerError, "Internal server error")
	}
}
