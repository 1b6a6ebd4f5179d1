package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"secondlook/auth"
	"secondlook/review"
	"secondlook/store"
)

// A SMART EHR launch of the gateway lets a clinician ask for a second opinion from inside the EHR: the EHR opens
// /launch?iss=…&launch=…, the gateway authorizes at that source with the launch (iss checked against the configured
// sources before any request), learns the patient in context, drops the clinician's token (the patient's own consent
// is still needed), and shows a form for the provider and the clinical question. Submitting it creates the review
// and shows the consent link to give the patient.

// launchStore keeps a launch's context between the callback and the form.
type launchStore interface {
	PutPrivateState(ctx context.Context, key string, value []byte, ttl time.Duration) error
	TakePrivateState(ctx context.Context, key string) ([]byte, error)
	CreateReview(ctx context.Context, r *review.Review) error
}

// ehrLauncher is the SMART client as the EHR launch uses it.
type ehrLauncher interface {
	BeginEHRLaunch(ctx context.Context, iss, launch, binding, reviewID string) (string, error)
}

// launchDraft is what the callback learned, kept for the form (30 minutes, single use, sealed at rest: it names the
// patient).
type launchDraft struct {
	Source  string `json:"source"`
	Patient string `json:"patient"`
	Binding string `json:"binding"`
}

const launchTTL = 30 * time.Minute

func draftKey(id string) string { return id + "/ehr-launch" }

func (f *consentFlow) mountLaunch(e *echo.Echo) {
	if f.Launch == nil || f.LaunchStore == nil {
		return
	}
	e.GET("/launch", f.beginLaunch)
	e.POST("/launch/:draft", f.submitLaunch)
}

// beginLaunch starts the EHR launch. An iss that is not a configured source's FHIR base is refused before any
// request leaves the gateway.
func (f *consentFlow) beginLaunch(c echo.Context) error {
	iss, launch := c.QueryParam("iss"), c.QueryParam("launch")
	if iss == "" || launch == "" || len(iss) > 2048 || len(launch) > 2048 {
		return &pageError{status: http.StatusBadRequest, key: "launch.invalid"}
	}
	draft, err := review.NewID()
	if err != nil {
		return err
	}
	binding, _ := f.session(c, true)
	to, err := f.Launch.BeginEHRLaunch(c.Request().Context(), iss, launch, binding, draft)
	if errors.Is(err, auth.ErrUntrustedIssuer) {
		return &pageError{status: http.StatusBadRequest, key: "launch.untrusted"}
	}
	if err != nil {
		f.Logger.LogAttrs(c.Request().Context(), slog.LevelWarn, "begin EHR launch failed", slog.String("error", err.Error()))
		return &pageError{status: http.StatusBadGateway, key: "launch.invalid"}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Redirect(http.StatusFound, to)
}

// launched handles the callback of an EHR launch: the clinician's token is revoked at once (the gateway reads
// nothing with it), and the form is shown.
func (f *consentFlow) launched(c echo.Context, g *auth.Grant, binding string) error {
	ctx := c.Request().Context()
	if err := f.Auth.Revoke(ctx, g.Key); err != nil && !errors.Is(err, auth.ErrNoGrant) {
		f.Logger.LogAttrs(ctx, slog.LevelWarn, "revoke EHR launch token failed", slog.String("source", g.SourceID), slog.String("error", err.Error()))
	}
	if f.LaunchStore == nil {
		return &pageError{status: http.StatusNotFound, key: "error.notfound"}
	}
	b, _ := json.Marshal(launchDraft{Source: g.SourceID, Patient: g.Patient, Binding: binding})
	if err := f.LaunchStore.PutPrivateState(ctx, draftKey(g.ReviewID), b, launchTTL); err != nil {
		return fmt.Errorf("keep launch context: %w", err)
	}
	return f.pages.render(c, http.StatusOK, "launch", f.launchView(c, g.ReviewID, g.SourceID, binding, ""))
}

// launchView is the data of the EHR launch form.
type launchView struct {
	L         localizer
	Action    string
	CSRF      string
	Source    string
	Providers []option
	Others    []option
	Error     string
	// ConsentURL is set once the review exists.
	ConsentURL string
}

type option struct{ ID, Name string }

func (f *consentFlow) launchView(c echo.Context, draft, source, binding, problem string) launchView {
	v := launchView{L: negotiate(c), Action: "/launch/" + draft, CSRF: f.launchToken(draft, binding),
		Source: nameOr(f.Sources[source].Name, source), Error: problem}
	for id, name := range f.Providers {
		v.Providers = append(v.Providers, option{ID: id, Name: nameOr(name, id)})
	}
	for id, s := range f.Sources {
		if id != source {
			v.Others = append(v.Others, option{ID: id, Name: nameOr(s.Name, id)})
		}
	}
	sort.Slice(v.Providers, func(i, j int) bool { return v.Providers[i].Name < v.Providers[j].Name })
	sort.Slice(v.Others, func(i, j int) bool { return v.Others[i].Name < v.Others[j].Name })
	return v
}

func (f *consentFlow) launchToken(draft, binding string) string {
	m := hmac.New(sha256.New, f.CSRFKey)
	fmt.Fprintf(m, "launch\x00%s\x00%s", draft, binding)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// submitLaunch creates the review from the form: the launch's source with its patient, the other sources the
// clinician ticked, the provider and the question.
func (f *consentFlow) submitLaunch(c echo.Context) error {
	ctx := c.Request().Context()
	draft := c.Param("draft")
	binding, ok := f.session(c, false)
	if !review.ValidID(draft) || !ok || !hmac.Equal([]byte(c.FormValue("csrf")), []byte(f.launchToken(draft, binding))) {
		return &pageError{status: http.StatusForbidden, key: "error.session"}
	}
	raw, err := f.LaunchStore.TakePrivateState(ctx, draftKey(draft))
	if errors.Is(err, store.ErrNotFound) {
		return &pageError{status: http.StatusGone, key: "launch.expired"}
	}
	if err != nil {
		return fmt.Errorf("load launch context: %w", err)
	}
	var d launchDraft
	if err := json.Unmarshal(raw, &d); err != nil || d.Binding != binding {
		return &pageError{status: http.StatusForbidden, key: "error.session"}
	}
	req := review.Request{
		Sources:  []review.SourceRequest{{Source: d.Source, PatientID: d.Patient}},
		Provider: c.FormValue("provider"),
		Question: strings.TrimSpace(c.FormValue("question")),
	}
	ticked := c.Request().Form["source"]
	if len(ticked) > review.MaxSources {
		// More boxes than a review may name: refused before the list is looked at.
		_ = f.LaunchStore.PutPrivateState(ctx, draftKey(draft), raw, launchTTL)
		return f.pages.render(c, http.StatusUnprocessableEntity, "launch", f.launchView(c, draft, d.Source, binding, negotiate(c).T("launch.problem")))
	}
	seen := map[string]bool{d.Source: true}
	for _, s := range ticked {
		if !seen[s] {
			seen[s] = true
			req.Sources = append(req.Sources, review.SourceRequest{Source: s})
		}
	}
	catalog := review.Catalog{
		Sources:   func(id string) bool { _, ok := f.Sources[id]; return ok },
		Providers: func(id string) bool { _, ok := f.Providers[id]; return ok },
		Types:     f.Types,
	}
	if err := req.Validate(catalog); err != nil {
		// Keep the context for a second try.
		_ = f.LaunchStore.PutPrivateState(ctx, draftKey(draft), raw, launchTTL)
		return f.pages.render(c, http.StatusUnprocessableEntity, "launch", f.launchView(c, draft, d.Source, binding, negotiate(c).T("launch.problem")))
	}
	r, err := review.New("ehr-launch:"+d.Source, req, f.Now(), f.Validity)
	if err != nil {
		return err
	}
	r.ID = draft
	if err := f.LaunchStore.CreateReview(ctx, r); err != nil {
		return fmt.Errorf("create review: %w", err)
	}
	v := f.launchView(c, draft, d.Source, binding, "")
	v.ConsentURL = f.PublicURL + "/consent/" + r.ID
	return f.pages.render(c, http.StatusCreated, "launch", v)
}
