package api

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.opentelemetry.io/otel/trace"
)

// Config holds what the HTTP edge needs from outside. Handlers' own dependencies live on the handlers.
type Config struct {
	Logger *slog.Logger
	// BodyLimit bounds every request body, e.g. "1M". Default 1M.
	BodyLimit string
	// RequestTimeout bounds each request's context. Default 30s.
	RequestTimeout time.Duration
	// Ready reports whether the gateway can serve (Redis reachable, keys loaded). Nil means always ready.
	Ready func(ctx context.Context) error
	// JWKS returns the gateway's public keys, served at /.well-known/jwks.json.
	JWKS func() ([]byte, error)
	// Consent enables the patient's consent pages; nil leaves them out.
	Consent *ConsentConfig
	// Reviews enables the review and packet APIs; nil leaves them out.
	Reviews *ReviewsConfig
	// OpenAPI is the API description served at /openapi.yaml.
	OpenAPI []byte
	// Metrics, when set, records every request.
	Metrics Recorder
	// ServeMetrics mounts /metrics on this handler (the demo); production serves them on a separate listener.
	ServeMetrics bool
	// CORSOrigins are the browser origins allowed cross-origin access to the API; empty turns CORS off.
	CORSOrigins []string
	// TracerProvider, when set, traces every request (a span named by route pattern, see traced); nil adds nothing.
	TracerProvider trace.TracerProvider
}

// Recorder records served requests and exposes the metrics.
type Recorder interface {
	HTTP(route, method string, status int, d time.Duration)
	Handler() http.Handler
}

// mounter is a handler that adds its own routes.
type mounter interface {
	mount(e *echo.Echo)
}

// Server is the gateway's HTTP handler.
type Server struct {
	e *echo.Echo
}

// New builds the gateway's HTTP handler with its middleware, error handler and the routes of every handler.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BodyLimit == "" {
		cfg.BodyLimit = "1M"
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	pg, err := loadPages()
	if err != nil {
		return nil, err
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(cfg.Logger, pg)
	if cfg.TracerProvider != nil {
		e.Use(traced(cfg.TracerProvider))
	}
	if cfg.Metrics != nil && cfg.ServeMetrics {
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics.Handler()))
	}
	if len(cfg.CORSOrigins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins: cfg.CORSOrigins, AllowMethods: []string{http.MethodGet, http.MethodPost},
			AllowHeaders: []string{"Authorization", "Content-Type", "If-None-Match"}, ExposeHeaders: []string{"ETag", "Location"},
			MaxAge: 600,
		}))
	}
	e.Use(
		securityHeaders(),
		requestID(),
		requestLogger(cfg.Logger, cfg.Metrics),
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			DisableStackAll: true, DisablePrintStack: true,
			LogErrorFunc: func(c echo.Context, _ error, _ []byte) error {
				// The panic value may hold request data: log only that a panic happened, and where (route).
				cfg.Logger.LogAttrs(c.Request().Context(), slog.LevelError, "handler panicked", slog.String("route", c.Path()))
				return problemf(http.StatusInternalServerError, "Something went wrong on our side. It has been logged.")
			},
		}),
		middleware.BodyLimit(cfg.BodyLimit),
		middleware.ContextTimeout(cfg.RequestTimeout),
	)
	ms := []mounter{
		health{ready: cfg.Ready},
		static{},
		wellKnown{jwks: cfg.JWKS, openapi: cfg.OpenAPI},
	}
	if cfg.Consent != nil {
		cc := *cfg.Consent
		if err := cc.validate(); err != nil {
			return nil, err
		}
		if cc.Now == nil {
			cc.Now = time.Now
		}
		if cc.Logger == nil {
			cc.Logger = cfg.Logger
		}
		ms = append(ms, &consentFlow{ConsentConfig: cc, pages: pg})
	}
	if cfg.Reviews != nil {
		rc := *cfg.Reviews
		if rc.Callers == nil || rc.Store == nil {
			return nil, errors.New("reviews: callers and store are required")
		}
		if rc.Now == nil {
			rc.Now = time.Now
		}
		if rc.Logger == nil {
			rc.Logger = cfg.Logger
		}
		if rc.Validity <= 0 {
			rc.Validity = 30 * 24 * time.Hour
		}
		if rc.CallerRate <= 0 {
			rc.CallerRate = DefaultCallerRate
		}
		if rc.CallerBurst <= 0 {
			rc.CallerBurst = DefaultCallerBurst
		}
		ms = append(ms, &reviewAPI{ReviewsConfig: rc})
	}
	for _, m := range ms {
		m.mount(e)
	}
	return &Server{e: e}, nil
}

// ServeHTTP serves a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.e.ServeHTTP(w, r) }

// reviewLogKey holds, once a handler has found the review a request is about, its id for the request's log line.
// Only ids of reviews that exist are logged (they are random, minted by the gateway, and name no one); a path
// parameter itself never is, since a caller can put anything there.
const reviewLogKey = "secondlook.review"

// logReview names the review a request turned out to be about in its log line.
func logReview(c echo.Context, id string) { c.Set(reviewLogKey, id) }

// requestLogger writes one structured line per request: method, route pattern (never the raw path or query, which
// carry ids), status, latency and request id.
func requestLogger(logger *slog.Logger, rec Recorder) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogMethod: true, LogRoutePath: true, LogStatus: true, LogLatency: true, LogRequestID: true, LogError: true,
		HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			attrs := []slog.Attr{
				slog.String("method", v.Method), slog.String("route", v.RoutePath), slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency), slog.String("request_id", v.RequestID),
			}
			if id, ok := c.Get(reviewLogKey).(string); ok {
				attrs = append(attrs, slog.String("review", id))
			}
			level := slog.LevelInfo
			if v.Status >= 500 {
				level = slog.LevelError
			}
			logger.LogAttrs(c.Request().Context(), level, "http request", attrs...)
			if rec != nil {
				rec.HTTP(v.RoutePath, v.Method, v.Status, v.Latency)
			}
			return nil
		},
	})
}

// securityHeaders sets the headers every response carries. Pages (the consent flow, static files, the published
// documents) get the full set: a Content-Security-Policy that allows nothing from other origins (pages use only
// their own stylesheet and no script), and the document-only policies. API responses (under /api/) are never
// rendered as documents and get the set OWASP's REST Security Cheat Sheet gives for APIs: nothing may load, frame
// or sniff them, and no referrer leaves. The sets are built once, with canonical names, and assigned whole.
func securityHeaders() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			set := pageHeaders
			if isAPI(c) {
				set = apiHeaders
			}
			h := c.Response().Header()
			for _, f := range set {
				h[f.name] = f.value
			}
			if c.Request().TLS != nil {
				h[hsts.name] = hsts.value
			}
			return next(c)
		}
	}
}

// headerField is one response header, its name canonical. Its value slice is shared by every response: its
// capacity equals its length (one), so a later Add appends to a copy, never to the shared array
// (TestSecurityHeaders holds every shared value to it).
type headerField struct {
	name  string
	value []string
}

func field(name, value string) headerField {
	return headerField{name: http.CanonicalHeaderKey(name), value: []string{value}}
}

var (
	hsts        = field("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	pageHeaders = []headerField{
		field("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
		field("X-Content-Type-Options", "nosniff"),
		field("X-Frame-Options", "DENY"),
		field("Referrer-Policy", "no-referrer"),
		field("Cross-Origin-Opener-Policy", "same-origin"),
		field("Cross-Origin-Resource-Policy", "same-origin"),
		field("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"),
	}
	apiHeaders = []headerField{
		field("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
		field("X-Content-Type-Options", "nosniff"),
		field("X-Frame-Options", "DENY"),
		field("Referrer-Policy", "no-referrer"),
		field("Cross-Origin-Resource-Policy", "same-origin"),
	}
)

// requestID gives every request an id minted here, in the X-Request-Id response header and in the log. An id sent
// by the client is replaced, never reflected: it is input nobody validated, and would carry whatever the client put
// in it (a token, a patient's identifier, a forged log line) into the log and the response.
func requestID() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id := rand.Text()
			c.Request().Header.Set(echo.HeaderXRequestID, id)
			c.Response().Header().Set(echo.HeaderXRequestID, id)
			return next(c)
		}
	}
}

// health serves liveness and readiness.
type health struct {
	ready func(ctx context.Context) error
}

func (h health) mount(e *echo.Echo) {
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", func(c echo.Context) error {
		if h.ready != nil {
			if err := h.ready(c.Request().Context()); err != nil {
				return problemf(http.StatusServiceUnavailable, "Not ready: "+readyReason(err))
			}
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
	})
}

// readyReason keeps readiness failures short and free of connection strings: an error may name its component.
func readyReason(err error) string {
	var c interface{ Component() string }
	if errors.As(err, &c) {
		return c.Component() + " unavailable"
	}
	return "a dependency is unavailable"
}

// wellKnown serves the gateway's public keys, so sources can verify its private_key_jwt client assertions and
// providers its packet signatures.
type wellKnown struct {
	jwks    func() ([]byte, error)
	openapi []byte
}

func (w wellKnown) mount(e *echo.Echo) {
	if w.openapi != nil {
		e.GET("/openapi.yaml", func(c echo.Context) error {
			return c.Blob(http.StatusOK, "application/yaml", w.openapi)
		})
	}
	if w.jwks == nil {
		return
	}
	e.GET("/.well-known/jwks.json", func(c echo.Context) error {
		b, err := w.jwks()
		if err != nil {
			return fmt.Errorf("serve jwks: %w", err)
		}
		c.Response().Header().Set("Cache-Control", "public, max-age=300")
		return c.Blob(http.StatusOK, "application/jwk-set+json", b)
	})
}
