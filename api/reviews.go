package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/labstack/echo/v4"

	"secondlook/audit"
	"secondlook/caller"
	"secondlook/review"
	"secondlook/store"
)

// reviewRecords is the storage the review and packet APIs need.
type reviewRecords interface {
	CreateReview(ctx context.Context, r *review.Review) error
	GetReview(ctx context.Context, id string) (*review.Review, error)
	ReviewAccess(ctx context.Context, id string) (*store.Access, error)
	ProviderReviews(ctx context.Context, provider string) ([]string, error)
	GetPacket(ctx context.Context, reviewID string) (*store.StoredPacket, error)
	AppendAudit(ctx context.Context, reviewID string, event []byte) error
	AppendAuditIf(ctx context.Context, reviewID string, event []byte, acc store.Access) error
	Audit(ctx context.Context, reviewID string) ([]store.AuditEntry, error)
}

// ReviewsConfig holds the review and packet APIs' dependencies.
type ReviewsConfig struct {
	Callers callerVerifier
	Store   reviewRecords
	Catalog review.Catalog
	// Validity is how long a review, its consent and its packet last (default 30 days).
	Validity time.Duration
	// PublicURL is the gateway's external origin, for the consent link.
	PublicURL string
	// Limiter, when set, limits each caller to CallerRate requests a second (burst CallerBurst) across replicas.
	Limiter     callerLimiter
	CallerRate  float64
	CallerBurst int
	Now         func() time.Time
	Logger      *slog.Logger
}

// reviewAPI serves EHR integrations (create and follow reviews) and providers (read packets).
type reviewAPI struct {
	ReviewsConfig
	packets packetCache
	access  accessCache
}

func (a *reviewAPI) mount(e *echo.Echo) {
	ehr := e.Group("/api/v1/reviews", requireCaller(a.Callers, caller.EHR, a.Limiter, a.CallerRate, a.CallerBurst))
	ehr.POST("", a.create)
	ehr.GET("/:id", a.get)
	ehr.GET("/:id/audit", a.audit)
	prov := e.Group("/api/v1/packets", requireCaller(a.Callers, caller.Provider, a.Limiter, a.CallerRate, a.CallerBurst))
	prov.GET("", a.listPackets)
	prov.GET("/:id", a.getPacket)
	prov.GET("/:id/report", a.getReport)
}

// reviewView is a review as the API shows it: never the clinical question back (it is PHI and the requester has it).
type reviewView struct {
	ID            string                 `json:"id"`
	State         review.State           `json:"state"`
	Reason        string                 `json:"reason,omitempty"`
	Progress      string                 `json:"progress,omitempty"`
	Sources       []review.SourceRequest `json:"sources"`
	Provider      string                 `json:"provider"`
	ResourceTypes []string               `json:"resourceTypes,omitempty"`
	LookBackDays  int                    `json:"lookBackDays,omitempty"`
	CreatedAt     time.Time              `json:"createdAt"`
	UpdatedAt     time.Time              `json:"updatedAt"`
	ExpiresAt     time.Time              `json:"expiresAt"`
	ConsentURL    string                 `json:"consentUrl"`
}

func (a *reviewAPI) view(r *review.Review) reviewView {
	return reviewView{ID: r.ID, State: r.State, Reason: r.Reason, Progress: r.Progress, Sources: r.Sources, Provider: r.Provider,
		ResourceTypes: r.ResourceTypes, LookBackDays: r.LookBackDays, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		ExpiresAt: r.ExpiresAt, ConsentURL: a.PublicURL + "/consent/" + r.ID}
}

const maxReviewBody = 64 << 10

func (a *reviewAPI) create(c echo.Context) error {
	ctx := c.Request().Context()
	if ct := c.Request().Header.Get("Content-Type"); !isJSON(ct) {
		return problemf(http.StatusUnsupportedMediaType, "Send the review request as application/json.")
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxReviewBody+1))
	if err != nil {
		return problemf(http.StatusBadRequest, "The request body could not be read.")
	}
	if len(body) > maxReviewBody {
		return problemf(http.StatusRequestEntityTooLarge, "The review request is larger than 64 KiB.")
	}
	var req review.Request
	if err := decodeStrict(body, &req); err != nil {
		return problemf(http.StatusBadRequest, "The body is not a valid review request (JSON with known fields only).")
	}
	if err := req.Validate(a.Catalog); err != nil {
		var ie *review.InvalidError
		if errors.As(err, &ie) {
			p := problemf(http.StatusUnprocessableEntity, "The review request has problems; each is listed.")
			for _, pr := range ie.Problems {
				p.Errors = append(p.Errors, FieldProblem{Field: pr.Field, Message: pr.Message})
			}
			return p
		}
		return err
	}
	cl := callerOf(c)
	r, err := review.New(cl.ID, req, a.Now(), a.Validity)
	if err != nil {
		return err
	}
	if err := a.Store.CreateReview(ctx, r); err != nil {
		return fmt.Errorf("create review: %w", err)
	}
	logReview(c, r.ID)
	a.record(ctx, audit.Event{Action: audit.ReviewCreated, Outcome: audit.Success, ClientID: cl.ID, ReviewID: r.ID})
	c.Response().Header().Set("Location", "/api/v1/reviews/"+r.ID)
	return c.JSON(http.StatusCreated, a.view(r))
}

// own loads a review the calling EHR created; any other review is 404, whether it exists or not.
func (a *reviewAPI) own(c echo.Context) (*review.Review, error) {
	id := c.Param("id")
	if !review.ValidID(id) {
		return nil, problemf(http.StatusNotFound, "There is no such review.")
	}
	r, err := a.Store.GetReview(c.Request().Context(), id)
	if err == nil {
		logReview(c, r.ID)
	}
	if errors.Is(err, store.ErrNotFound) || (err == nil && r.Requester != callerOf(c).ID) {
		if err == nil {
			a.record(c.Request().Context(), audit.Event{Action: audit.ReviewRead, Outcome: audit.Denied, ClientID: callerOf(c).ID, ReviewID: id})
		}
		return nil, problemf(http.StatusNotFound, "There is no such review.")
	}
	if err != nil {
		return nil, fmt.Errorf("get review: %w", err)
	}
	return r, nil
}

func (a *reviewAPI) get(c echo.Context) error {
	r, err := a.own(c)
	if err != nil {
		return err
	}
	a.record(c.Request().Context(), audit.Event{Action: audit.ReviewRead, Outcome: audit.Success, ClientID: callerOf(c).ID, ReviewID: r.ID})
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, a.view(effective(r, a.Now())))
}

// effective shows a review past its expiry as expired even before the sweeper records it.
func effective(r *review.Review, now time.Time) *review.Review {
	if s := effectiveState(r.State, r.ExpiresAt, now); s != r.State {
		cp := *r
		cp.State = s
		return &cp
	}
	return r
}

// effectiveState is a review's state at now: expired once its consent period is over, whatever the store says yet.
func effectiveState(s review.State, expires, now time.Time) review.State {
	if !s.Final() && !now.Before(expires) {
		return review.Expired
	}
	return s
}

// decodeStrict decodes one JSON value into v, refusing anything another parser could read differently: unknown
// or differently-cased member names, a member given twice, invalid UTF-8, numbers that do not fit, and anything
// after the value.
func decodeStrict(body []byte, v any) error {
	return jsonv2.Unmarshal(body, v, jsonv2.RejectUnknownMembers(true))
}

func isJSON(ct string) bool {
	mt := strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	return mt == "application/json"
}

func (a *reviewAPI) audit(c echo.Context) error {
	r, err := a.own(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	a.record(ctx, audit.Event{Action: audit.AuditRead, Outcome: audit.Success, ClientID: callerOf(c).ID, ReviewID: r.ID})
	trail, err := a.Store.Audit(ctx, r.ID)
	if err != nil {
		return fmt.Errorf("read audit: %w", err)
	}
	entries := make([]map[string]any, 0, len(trail))
	for _, e := range trail {
		entries = append(entries, map[string]any{"resource": json.RawMessage(e.Event),
			"extension": []map[string]string{{"url": "urn:secondlook:audit-chain-hash", "valueString": e.Hash}}})
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, map[string]any{"resourceType": "Bundle", "type": "collection", "entry": entries})
}

// record appends an audit event; a failure to audit is logged, and never reaches the caller.
func (a *reviewAPI) record(ctx context.Context, e audit.Event) {
	e.At = a.Now()
	if err := a.Store.AppendAudit(ctx, e.ReviewID, e.JSON()); err != nil {
		a.Logger.LogAttrs(ctx, slog.LevelError, "audit append failed", slog.String("error", err.Error()))
	}
}
