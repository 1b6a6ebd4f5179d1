package api

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"secondlook/auth"
	"secondlook/consent"
	"secondlook/review"
	"secondlook/store"
)

// reviewStore is what the consent flow needs of review storage.
type reviewStore interface {
	GetReview(ctx context.Context, id string) (*review.Review, error)
	// MoveReview moves the review to state to if it is in one of from, atomically, and returns it as it is now.
	MoveReview(ctx context.Context, id string, from []review.State, to review.State, reason string) (*review.Review, error)
}

// consentStore keeps the patient's decisions, one per source of a review.
type consentStore interface {
	SaveConsent(ctx context.Context, rec consent.Record) error
	Consents(ctx context.Context, reviewID string) ([]consent.Record, error)
	// AddPatientSession and IsPatientSession record and check the browser sessions (by binding) that signed in at
	// a source as the review's patient: only they may withdraw.
	AddPatientSession(ctx context.Context, reviewID, binding string, expiresAt time.Time) error
	IsPatientSession(ctx context.Context, reviewID, binding string) (bool, error)
}

// verifyMark marks, in the review id an authorization is begun for, a sign-in that only proves the browser is the
// patient's (to withdraw from another browser than the one that consented): the id is the review's, the mark and
// a random tag, so that each such sign-in's grant is stored under its own key, never replacing the consent's or
// another browser's, and is revoked as soon as it completes. Review ids never contain a ".".
const verifyMark = ".verify-"

// authorizer is the SMART client as the consent flow uses it.
type authorizer interface {
	Begin(ctx context.Context, r auth.BeginRequest) (string, error)
	Complete(ctx context.Context, sourceID string, callback url.Values, binding string) (*auth.Grant, error)
	Revoke(ctx context.Context, grantKey string) error
}

// SourceInfo is how a source is shown to the patient.
type SourceInfo struct {
	Name string
	Kind string // hospital | provincial
}

// ConsentConfig holds the consent flow's dependencies.
type ConsentConfig struct {
	Reviews  reviewStore
	Consents consentStore
	Auth     authorizer
	// Sources, Providers and Requesters give display names for configured ids.
	Sources    map[string]SourceInfo
	Providers  map[string]string
	Requesters map[string]string
	// CSRFKey keys the withdrawal form's token (at least 32 bytes).
	CSRFKey []byte
	// SecureCookies sets the session cookie's Secure flag and __Host- prefix; on for any https deployment.
	SecureCookies bool
	// OweAssembly, when set, is called just before the review moves to consented, and OnConsented just after: a job
	// lost in between, when this process or Redis fails, stays owed, and a sweeper queues it.
	OweAssembly func(ctx context.Context, reviewID string) error
	// OnConsented is called when the last source of a review is authorized (the assembly job is queued there).
	OnConsented func(ctx context.Context, reviewID string) error
	// OnWithdrawn is called after a withdrawal (packets are purged there).
	OnWithdrawn func(ctx context.Context, reviewID string) error
	// Event, when set, is told of consent events ("granted" per source, "withdrawn" per review) for metrics.
	Event func(event string)
	// Launch and LaunchStore enable the SMART EHR launch of the gateway (/launch); PublicURL, Validity and Types
	// (the resource types a review may ask for) shape the reviews it creates.
	Launch      ehrLauncher
	LaunchStore launchStore
	PublicURL   string
	Validity    time.Duration
	Types       []string
	Now         func() time.Time
	Logger      *slog.Logger
}

// consentFlow serves the patient's pages: the consent page, the authorization at each source and its callback,
// and withdrawal.
type consentFlow struct {
	ConsentConfig
	pages *pages
}

func (f *consentFlow) mount(e *echo.Echo) {
	e.GET("/consent/:review", f.show)
	e.GET("/consent/:review/authorize/:source", f.authorize)
	e.GET("/consent/:review/verify/:source", f.verify)
	e.GET("/auth/callback/:source", f.callback)
	e.POST("/consent/:review/withdraw", f.withdraw)
	f.mountLaunch(e)
}

func (f *consentFlow) cookieName() string {
	if f.SecureCookies {
		return "__Host-secondlook"
	}
	return "secondlook"
}

// session returns the browser's binding (the SHA-256 of its session cookie), setting a new cookie when there is
// none. The cookie is HttpOnly, SameSite=Lax (it must come back on the top-level redirect from the source).
func (f *consentFlow) session(c echo.Context, create bool) (string, bool) {
	if ck, err := c.Cookie(f.cookieName()); err == nil && len(ck.Value) >= 43 && len(ck.Value) <= 64 {
		return bindingOf(ck.Value), true
	}
	if !create {
		return "", false
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	v := base64.RawURLEncoding.EncodeToString(b[:])
	c.SetCookie(&http.Cookie{ //nolint:gosec // G124: HttpOnly and SameSite set; Secure as configured (SecureCookies, on for https)
		Name: f.cookieName(), Value: v, Path: "/", HttpOnly: true, Secure: f.SecureCookies, SameSite: http.SameSiteLaxMode,
	})
	return bindingOf(v), true
}

func bindingOf(cookie string) string {
	s := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(s[:])
}

func (f *consentFlow) csrfToken(reviewID, binding string) string {
	m := hmac.New(sha256.New, f.CSRFKey)
	fmt.Fprintf(m, "withdraw\x00%s\x00%s", reviewID, binding)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// pageError is an expected failure on a patient page: it renders the message page with a status.
type pageError struct {
	status int
	key    string
	args   []any
	back   string
}

func (e *pageError) Error() string { return fmt.Sprintf("page error %d %s", e.status, e.key) }

func (f *consentFlow) load(c echo.Context) (*review.Review, error) {
	id := c.Param("review")
	if !review.ValidID(id) {
		return nil, &pageError{status: http.StatusNotFound, key: "error.notfound"}
	}
	r, err := f.Reviews.GetReview(c.Request().Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &pageError{status: http.StatusNotFound, key: "error.notfound"}
	}
	if err != nil {
		return nil, fmt.Errorf("load review: %w", err)
	}
	logReview(c, r.ID)
	if r.State == review.Expired || (r.State != review.Withdrawn && !f.Now().Before(r.ExpiresAt)) {
		return nil, &pageError{status: http.StatusGone, key: "error.notfound"}
	}
	return r, nil
}

func (f *consentFlow) show(c echo.Context) error {
	r, err := f.load(c)
	if err != nil {
		return err
	}
	binding, _ := f.session(c, true)
	ctx := c.Request().Context()
	recs, err := f.Consents.Consents(ctx, r.ID)
	if err != nil {
		return fmt.Errorf("load consents: %w", err)
	}
	patient, err := f.Consents.IsPatientSession(ctx, r.ID, binding)
	if err != nil {
		// The page still shows; the withdrawal is not offered until the check can be made.
		f.Logger.LogAttrs(ctx, slog.LevelWarn, "check patient session failed", slog.String("error", err.Error()))
		patient = false
	}
	if r.State == review.AwaitingConsent {
		// Every source may be consented already while the review still waits: the request that saved the last
		// consent died before moving it. Finishing the move here (idempotent) lets the patient's next visit heal it.
		moved, err := f.maybeConsented(ctx, r, recs)
		if err != nil {
			f.Logger.LogAttrs(ctx, slog.LevelWarn, "complete consent on view failed", slog.String("error", err.Error()))
		} else if moved != nil {
			r = moved
		}
	}
	return f.pages.render(c, http.StatusOK, "consent", f.view(c, r, recs, binding, patient))
}

// view is the consent page for a browser session (binding); patient says whether the session signed in at a source
// as the review's patient, which withdrawing needs.
func (f *consentFlow) view(c echo.Context, r *review.Review, recs []consent.Record, binding string, patient bool) consentView {
	now := f.Now()
	bySource := map[string]consent.Record{}
	for _, rec := range recs {
		bySource[rec.SourceID] = rec
	}
	v := consentView{
		L:         negotiate(c),
		Requester: displayName(f.Requesters, r.Requester),
		Provider:  displayName(f.Providers, r.Provider),
		Types:     r.ResourceTypes,
		Until:     r.ExpiresAt,
		Withdrawn: r.State == review.Withdrawn,
	}
	if len(v.Types) == 0 {
		v.Types = []string{"DiagnosticReport", "ImagingStudy", "Condition"}
	}
	for _, s := range r.Sources {
		info := f.Sources[s.Source]
		sv := sourceView{ID: s.Source, Name: nameOr(info.Name, s.Source), Kind: info.Kind, State: "pending",
			AuthorizeURL: "/consent/" + r.ID + "/authorize/" + s.Source}
		if rec, ok := bySource[s.Source]; ok {
			switch {
			case rec.Active(now):
				sv.State = "granted"
				sv.NotGranted = rec.Denied
				v.CanWithdraw = true
			case !rec.Withdrawn.IsZero():
				sv.State = "withdrawn"
			}
		}
		v.Sources = append(v.Sources, sv)
	}
	if v.Withdrawn {
		v.CanWithdraw = false
	}
	if v.CanWithdraw && !patient {
		v.CanWithdraw, v.SignInToWithdraw = false, true
		for i, sv := range v.Sources {
			if canVerify(r, recs, sv.ID, now) {
				v.Sources[i].VerifyURL = "/consent/" + r.ID + "/verify/" + sv.ID
			}
		}
	}
	if v.CanWithdraw {
		v.WithdrawURL = "/consent/" + r.ID + "/withdraw"
		v.CSRF = f.csrfToken(r.ID, binding)
	}
	return v
}

func displayName(m map[string]string, id string) string { return nameOr(m[id], id) }

// nameOr is a display name, or the id when there is none.
func nameOr(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// authorize starts the SMART standalone launch at one source and sends the browser there.
func (f *consentFlow) authorize(c echo.Context) error {
	r, src, recs, err := f.loadSource(c)
	if err != nil {
		return err
	}
	// Only while consent is awaited, and not again at a source already consented at: the new grant would replace
	// the patient's (and, at a source the review names no patient for, whoever signed in would take their place).
	if r.State != review.AwaitingConsent || activeAt(recs, src, f.Now()) {
		return &pageError{status: http.StatusConflict, key: "error.closed", back: "/consent/" + r.ID}
	}
	return f.sendToSource(c, r.ID, auth.BeginRequest{SourceID: src, ReviewID: r.ID})
}

// loadSource loads the review of a page under /consent/{review}/…/{source}, checks the source is one of the
// review's (else 404), and loads the review's consents.
func (f *consentFlow) loadSource(c echo.Context) (*review.Review, string, []consent.Record, error) {
	r, err := f.load(c)
	if err != nil {
		return nil, "", nil, err
	}
	src := c.Param("source")
	if !slices.ContainsFunc(r.Sources, func(s review.SourceRequest) bool { return s.Source == src }) {
		return nil, "", nil, &pageError{status: http.StatusNotFound, key: "error.notfound"}
	}
	recs, err := f.Consents.Consents(c.Request().Context(), r.ID)
	if err != nil {
		return nil, "", nil, fmt.Errorf("load consents: %w", err)
	}
	return r, src, recs, nil
}

// sendToSource begins a SMART standalone launch at req's source for review reviewID, bound to this browser's
// session, and sends the browser there.
func (f *consentFlow) sendToSource(c echo.Context, reviewID string, req auth.BeginRequest) error {
	ctx := c.Request().Context()
	req.Binding, _ = f.session(c, true)
	to, err := f.Auth.Begin(ctx, req)
	if err != nil {
		f.Logger.LogAttrs(ctx, slog.LevelWarn, "begin authorization failed", slog.String("source", req.SourceID), slog.String("error", err.Error()))
		return &pageError{status: http.StatusBadGateway, key: "error.auth", args: []any{f.Sources[req.SourceID].Name}, back: "/consent/" + reviewID}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Redirect(http.StatusFound, to)
}

// callback completes the authorization, checks the patient is the review's, records the Consent, and moves the
// review on when every source is authorized.
func (f *consentFlow) callback(c echo.Context) error {
	ctx := c.Request().Context()
	src := c.Param("source")
	info, known := f.Sources[src]
	if !known {
		return &pageError{status: http.StatusNotFound, key: "error.notfound"}
	}
	binding, ok := f.session(c, false)
	if !ok {
		return &pageError{status: http.StatusBadRequest, key: "error.session"}
	}
	g, err := f.Auth.Complete(ctx, src, c.QueryParams(), binding)
	if err != nil {
		var ae *auth.AuthorizationError
		switch {
		case errors.As(err, &ae) && ae.Denied():
			return &pageError{status: http.StatusOK, key: "error.denied", args: []any{info.Name}}
		case errors.Is(err, auth.ErrBindingMismatch), errors.Is(err, auth.ErrInvalidState):
			return &pageError{status: http.StatusBadRequest, key: "error.session"}
		}
		return &pageError{status: http.StatusBadGateway, key: "error.auth", args: []any{info.Name}}
	}
	if g.EHRLaunch {
		return f.launched(c, g, binding)
	}
	if id, _, verifying := strings.Cut(g.ReviewID, verifyMark); verifying {
		return f.verified(c, g, id, binding)
	}
	r, err := f.Reviews.GetReview(ctx, g.ReviewID)
	if err != nil {
		_ = f.Auth.Revoke(ctx, g.Key)
		return fmt.Errorf("load review after authorization: %w", err)
	}
	back := "/consent/" + r.ID
	if r.State != review.AwaitingConsent {
		_ = f.Auth.Revoke(ctx, g.Key)
		return &pageError{status: http.StatusConflict, key: "error.closed", back: back}
	}
	if named := namedPatient(r, src); named != "" && named != g.Patient {
		// The patient signed in as someone else than the review names: nothing is kept.
		_ = f.Auth.Revoke(ctx, g.Key)
		f.Logger.LogAttrs(ctx, slog.LevelWarn, "authorized patient is not the review's patient", slog.String("source", src))
		return &pageError{status: http.StatusForbidden, key: "error.notpatient", args: []any{info.Name}, back: back}
	}
	granted := clinicalTypes(g.GrantedTypes)
	if len(granted) == 0 {
		_ = f.Auth.Revoke(ctx, g.Key)
		return &pageError{status: http.StatusOK, key: "error.denied", args: []any{info.Name}, back: back}
	}
	before, err := f.Consents.Consents(ctx, r.ID)
	if err != nil {
		return fmt.Errorf("load consents: %w", err)
	}
	if activeAt(before, src, f.Now()) {
		// Two sign-ins raced at one source: the first one's consent stands.
		_ = f.Auth.Revoke(ctx, g.Key)
		return &pageError{status: http.StatusConflict, key: "error.closed", back: back}
	}
	id, err := review.NewID()
	if err != nil {
		return err
	}
	now := f.Now()
	rec := consent.Record{
		ID: id, ReviewID: r.ID, SourceID: src, SourceName: info.Name, PatientRef: "Patient/" + g.Patient,
		ProviderID: r.Provider, ProviderName: displayName(f.Providers, r.Provider),
		Granted: granted, Denied: clinicalTypes(g.DeniedTypes), Start: now, End: r.ExpiresAt,
	}
	if err := f.Consents.SaveConsent(ctx, rec); err != nil {
		_ = f.Auth.Revoke(ctx, g.Key)
		return fmt.Errorf("save consent: %w", err)
	}
	if provesPatient(r, src) {
		if err := f.Consents.AddPatientSession(ctx, r.ID, binding, r.ExpiresAt); err != nil {
			// The consent stands; this browser will have to sign in again to withdraw it.
			f.Logger.LogAttrs(ctx, slog.LevelWarn, "record patient session failed", slog.String("error", err.Error()))
		}
	}
	if f.Event != nil {
		f.Event("granted")
	}
	recs, err := f.Consents.Consents(ctx, r.ID)
	if err != nil {
		return fmt.Errorf("load consents: %w", err)
	}
	if _, err := f.maybeConsented(ctx, r, recs); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, back)
}

// verify starts a sign-in at a source the patient has consented at, only to prove that this browser is the
// patient's, so that it may withdraw (the browser that consented may withdraw at once). It is refused once the
// review is withdrawn, or where there is no active consent to withdraw.
func (f *consentFlow) verify(c echo.Context) error {
	r, src, recs, err := f.loadSource(c)
	if err != nil {
		return err
	}
	now := f.Now()
	active := slices.ContainsFunc(recs, func(rec consent.Record) bool { return rec.Active(now) })
	if r.State == review.Withdrawn || !active || !canVerify(r, recs, src, now) {
		return &pageError{status: http.StatusConflict, key: "error.closed", back: "/consent/" + r.ID}
	}
	return f.sendToSource(c, r.ID, auth.BeginRequest{SourceID: src, ReviewID: r.ID + verifyMark + strings.ToLower(rand.Text()[:8]),
		IdentityOnly: true})
}

// verified completes a verify sign-in: its grant is revoked at once (it asked for no records), and if the patient
// who signed in is the review's (see canVerify), this browser session may now withdraw.
func (f *consentFlow) verified(c echo.Context, g *auth.Grant, reviewID, binding string) error {
	ctx := c.Request().Context()
	// Not tied to the request: a browser that gives up must not leave the grant stored.
	if err := f.Auth.Revoke(context.WithoutCancel(ctx), g.Key); err != nil && !errors.Is(err, auth.ErrNoGrant) {
		f.Logger.LogAttrs(ctx, slog.LevelWarn, "revoking the identity sign-in failed", slog.String("source", g.SourceID), slog.String("error", err.Error()))
	}
	back := "/consent/" + reviewID
	r, err := f.Reviews.GetReview(ctx, reviewID)
	if errors.Is(err, store.ErrNotFound) {
		return &pageError{status: http.StatusNotFound, key: "error.notfound"}
	}
	if err != nil {
		return fmt.Errorf("load review after sign-in: %w", err)
	}
	now := f.Now()
	if r.State == review.Withdrawn || r.State == review.Expired || !now.Before(r.ExpiresAt) {
		return &pageError{status: http.StatusConflict, key: "error.closed", back: back}
	}
	recs, err := f.Consents.Consents(ctx, r.ID)
	if err != nil {
		return fmt.Errorf("load consents: %w", err)
	}
	if !canVerify(r, recs, g.SourceID, now) {
		return &pageError{status: http.StatusConflict, key: "error.closed", back: back}
	}
	if !isPatient(r, recs, g.SourceID, g.Patient, now) {
		f.Logger.LogAttrs(ctx, slog.LevelWarn, "signed-in patient is not the review's patient", slog.String("source", g.SourceID))
		return &pageError{status: http.StatusForbidden, key: "error.notpatient", args: []any{nameOr(f.Sources[g.SourceID].Name, g.SourceID)}, back: back}
	}
	if err := f.Consents.AddPatientSession(ctx, r.ID, binding, r.ExpiresAt); err != nil {
		return fmt.Errorf("record patient session: %w", err)
	}
	return c.Redirect(http.StatusSeeOther, back)
}

// provesPatient reports whether a sign-in at src, once checked, proves the browser is the review's patient: src
// names the patient (the EHR gave the patient's id there), or no source of the review names one, and the link is
// then all that ties the patient to the review. A sign-in at a source naming no patient, while another source
// names one, proves nothing: anyone holding the link could sign in there as themselves.
func provesPatient(r *review.Review, src string) bool {
	return namedPatient(r, src) != "" || !slices.ContainsFunc(r.Sources, func(s review.SourceRequest) bool { return s.PatientID != "" })
}

// canVerify reports whether a browser may sign in at src to prove it is the patient: a source that names the
// patient, or, when none does, one with an active consent (whose patient the sign-in is compared with).
func canVerify(r *review.Review, recs []consent.Record, src string, now time.Time) bool {
	return provesPatient(r, src) && (namedPatient(r, src) != "" || activeAt(recs, src, now))
}

// isPatient reports whether patient, signed in at src, is the review's patient: the one src names, or the one who
// consented there.
func isPatient(r *review.Review, recs []consent.Record, src, patient string, now time.Time) bool {
	if named := namedPatient(r, src); named != "" {
		return named == patient
	}
	return slices.ContainsFunc(recs, func(rec consent.Record) bool {
		return rec.SourceID == src && rec.Active(now) && rec.PatientRef == "Patient/"+patient
	})
}

// namedPatient is the patient id the review names at src (from the EHR), or "".
func namedPatient(r *review.Review, src string) string {
	for _, s := range r.Sources {
		if s.Source == src {
			return s.PatientID
		}
	}
	return ""
}

// activeAt reports whether recs hold an active consent at src.
func activeAt(recs []consent.Record, src string, now time.Time) bool {
	return slices.ContainsFunc(recs, func(rec consent.Record) bool { return rec.SourceID == src && rec.Active(now) })
}

// clinicalTypes leaves out the types every grant includes for the gateway's own needs (Patient, and Observation,
// which comes with DiagnosticReport).
func clinicalTypes(types []string) []string {
	var out []string
	for _, t := range types {
		if t != "Patient" && t != "Observation" {
			out = append(out, t)
		}
	}
	return out
}

// maybeConsented moves the review to consented and queues its assembly once every source has an active consent in
// recs (the review's consent records); it returns the moved review if this call made the move, else nil.
func (f *consentFlow) maybeConsented(ctx context.Context, r *review.Review, recs []consent.Record) (*review.Review, error) {
	now := f.Now()
	for _, s := range r.Sources {
		if !activeAt(recs, s.Source, now) {
			return nil, nil
		}
	}
	if f.OweAssembly != nil {
		if err := f.OweAssembly(ctx, r.ID); err != nil {
			return nil, fmt.Errorf("owe assembly: %w", err)
		}
	}
	moved, err := f.Reviews.MoveReview(ctx, r.ID, []review.State{review.AwaitingConsent}, review.Consented, "")
	if err != nil {
		if errors.Is(err, review.ErrTransition) {
			return nil, nil // another request got there first
		}
		return nil, fmt.Errorf("mark review consented: %w", err)
	}
	if f.OnConsented != nil {
		if err := f.OnConsented(ctx, r.ID); err != nil {
			return moved, fmt.Errorf("start assembly: %w", err)
		}
	}
	return moved, nil
}

// withdraw ends the consent at once: the review is withdrawn (so no worker or provider proceeds), each grant is
// revoked at its source and deleted, each Consent made inactive, and packets purged.
func (f *consentFlow) withdraw(c echo.Context) error {
	r, err := f.load(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	binding, ok := f.session(c, false)
	if !ok || !hmac.Equal([]byte(c.FormValue("csrf")), []byte(f.csrfToken(r.ID, binding))) {
		return &pageError{status: http.StatusForbidden, key: "error.session", back: "/consent/" + r.ID}
	}
	// Holding the review's link is not enough: the browser must have signed in as the patient (provesPatient).
	patient, err := f.Consents.IsPatientSession(ctx, r.ID, binding)
	if err != nil {
		return fmt.Errorf("check patient session: %w", err)
	}
	if !patient {
		return &pageError{status: http.StatusForbidden, key: "error.signin", back: "/consent/" + r.ID}
	}
	if r.State != review.Withdrawn {
		from := []review.State{review.AwaitingConsent, review.Consented, review.Assembling, review.Ready}
		if _, err := f.Reviews.MoveReview(ctx, r.ID, from, review.Withdrawn, store.WithdrawnByPatient); err != nil && !errors.Is(err, review.ErrTransition) {
			return fmt.Errorf("withdraw review: %w", err)
		}
	}
	recs, err := f.Consents.Consents(ctx, r.ID)
	if err != nil {
		return fmt.Errorf("load consents: %w", err)
	}
	now := f.Now()
	var errs []error
	for _, rec := range recs {
		if rec.Withdrawn.IsZero() {
			rec.Withdrawn = now
			if err := f.Consents.SaveConsent(ctx, rec); err != nil {
				errs = append(errs, err)
			}
		}
		if err := f.Auth.Revoke(ctx, auth.GrantKey(r.ID, rec.SourceID)); err != nil && !errors.Is(err, auth.ErrNoGrant) {
			// The local grant is gone all the same; the source's token expires on its own.
			f.Logger.LogAttrs(ctx, slog.LevelWarn, "revocation at source failed", slog.String("source", rec.SourceID), slog.String("error", err.Error()))
		}
	}
	if f.OnWithdrawn != nil {
		if err := f.OnWithdrawn(ctx, r.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("withdraw: %w", err)
	}
	if f.Event != nil {
		f.Event("withdrawn")
	}
	return c.Redirect(http.StatusSeeOther, "/consent/"+r.ID)
}

func (cc *ConsentConfig) validate() error {
	var problems []error
	if cc.Reviews == nil || cc.Consents == nil || cc.Auth == nil {
		problems = append(problems, errors.New("consent: reviews, consents and auth are required"))
	}
	if len(cc.CSRFKey) < 32 {
		problems = append(problems, errors.New("consent: the CSRF key must be at least 32 bytes"))
	}
	return errors.Join(problems...)
}
